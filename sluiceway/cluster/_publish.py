"""The distributor's side of the write path: a validated `PushRecord` cut by partition
(tenant + stream fingerprint) and by size (below NATS's `max_payload`), each piece
published to its partition's subject with a `Nats-Msg-Id` made from its bytes, so a
client's retry of the same push inside JetStream's `duplicate_window` (2 min) is stored
once. `publish` returns only when every piece is acked (the push's 204) and raises
`PublishError` naming how many were not (503: the client retries the whole push; the
acked pieces deduplicate).

Streams are made on first use: `partitions / partitions_per_stream` streams (each has
one Raft leader, so the ingest spreads over the NATS nodes), `replicas` each (capped at
the cluster's size). Nothing here needs nats-server past 2.9: one message per publish,
no batch, no per-message TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from sluiceway.cluster._admin import ensure_stream
from sluiceway.cluster._config import ClusterConfig, partition_of
from sluiceway.cluster._conn import ClusterError, NatsConn
from sluiceway.model import PushRecord, fingerprint

log = logging.getLogger("sluiceway.cluster")
_HEADROOM = 8 << 10  # headers and the JetStream envelope within max_payload


class PublishError(ClusterError):
    """Some pieces of a push were not acked: nothing to count as stored."""


class PayloadTooLarge(ValueError):
    """One line is larger than NATS's max_payload allows."""


def split_record(record: PushRecord, partitions: int, max_bytes: int
                 ) -> list[tuple[int, bytes]]:
    """(partition, encoded record) pieces of `record`, each at most `max_bytes`."""
    by_part: dict[int, list[int]] = {}
    for i, b in enumerate(record.blocks):
        by_part.setdefault(partition_of(record.tenant, fingerprint(b.labels), partitions),
                           []).append(i)
    out: list[tuple[int, bytes]] = []
    for p, keep in sorted(by_part.items()):
        sub = record if len(keep) == len(record.blocks) else record.subset(keep)
        out.extend((p, data) for data in _fit(sub, max_bytes))
    return out


def _fit(record: PushRecord, max_bytes: int) -> list[bytes]:
    data = record.encode()
    if len(data) <= max_bytes:
        return [data]
    if len(record.blocks) > 1:
        half = len(record.blocks) // 2
        return (_fit(PushRecord(record.tenant, record.blocks[:half]), max_bytes)
                + _fit(PushRecord(record.tenant, record.blocks[half:]), max_bytes))
    block = record.blocks[0]
    if len(block) <= 1:
        raise PayloadTooLarge(f"a line of {block.nbytes} bytes does not fit in one NATS "
                              f"message (cluster.max_payload {max_bytes + _HEADROOM})")
    half = len(block) // 2
    return (_fit(PushRecord(record.tenant, [block.slice(0, half)]), max_bytes)
            + _fit(PushRecord(record.tenant, [block.slice(half, len(block))]), max_bytes))


class Publisher:
    def __init__(self, conn: NatsConn, cfg: ClusterConfig) -> None:
        self.conn = conn
        self.cfg = cfg
        self.ready = False
        self.published = 0  # messages acked
        self.failed = 0  # messages not acked

    def ensure_streams(self) -> None:
        """Make the ingest streams (once, at start, after connecting)."""
        for k in range(self.cfg.streams):
            parts = self.cfg.stream_partitions(k)
            self.conn.run(ensure_stream(
                self.conn.js, self.cfg.stream_of(parts[0]),
                [self.cfg.subject(p) for p in parts], self.cfg.replicas,
                "Sluiceway ingest partitions"), f"stream {self.cfg.stream_of(parts[0])}")
        self.ready = True

    async def publish(self, record: PushRecord) -> int:
        """Publish `record`; returns the messages it took. Raises PublishError when some
        were not acked, PayloadTooLarge when a line cannot fit in a message."""
        pieces = split_record(record, self.cfg.partitions, self.cfg.max_payload - _HEADROOM)
        fut = asyncio.wrap_future(self.conn.submit(self._publish_all(pieces)))
        results = await fut
        bad = [r for r in results if isinstance(r, BaseException)]
        self.published += len(results) - len(bad)
        self.failed += len(bad)
        if bad:
            raise PublishError(f"{len(bad)} of {len(results)} parts of the push were not "
                               f"acked by JetStream ({type(bad[0]).__name__}: {bad[0]})")
        return len(results)

    async def _publish_all(self, pieces: list[tuple[int, bytes]]
                           ) -> list[object | BaseException]:
        js = self.conn.js
        timeout = self.cfg.timeout

        async def one(p: int, data: bytes) -> object:
            msg_id = f"{p}-{hashlib.blake2b(data, digest_size=16).hexdigest()}"
            return await js.publish(self.cfg.subject(p), data, timeout=timeout,
                                    stream=self.cfg.stream_of(p),
                                    headers={"Nats-Msg-Id": msg_id})

        return list(await asyncio.gather(*(one(p, d) for p, d in pieces),
                                         return_exceptions=True))
