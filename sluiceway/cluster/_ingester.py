"""The ingester role: partitions owned through leases, each consumed in order into the
local store's heads, flushed to the shared object store, and the stream sequence that is
fully in chunks recorded per partition in KV (`<prefix>offsets`, key `p-<n>`).

- **Ownership.** Every tick the node's lease keeper renews the leases it holds, then
  calls `balance`: it stops every partition whose lease is not held (lost at this
  renewal or at one whose report never reached it); with `n` live ingesters (member
  registry) each aims at `ceil(partitions / n)`; it takes free partitions (no holder, or
  one that let its lease expire, `lease_ttl`) while below and gives one back per tick
  while above, so a process that joins gets its share and a dead one's partitions move
  within `lease_ttl` plus a tick.
- **Consuming.** A taken partition reads its recorded sequence `S` and consumes its
  subject from `S + 1` with an ordered consumer (one per partition: nats-server 2.9 has
  no multi-filter consumers). Each message is a `PushRecord`, appended to the local
  store (`Store.ingest_at`), whose log position is remembered beside the sequence.
- **Recording.** Every second the commit thread asks the store for its checkpoint `C`
  (every record at or before `C` is in chunks and index objects); per partition the last
  sequence whose record is at or before `C` is written to KV. A new owner replays from
  there: at-least-once, and the read path drops the exact duplicates.
- **Bounds.** Past `flush_cap` unflushed bytes a partition forces a flush of the heads
  holding its records; messages stay in the stream until `purge_delay` after they were
  recorded as in chunks, then the partition's subject is purged up to there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
import zlib
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluiceway.cluster._admin import ensure_kv, kv_value
from sluiceway.cluster._config import ClusterConfig
from sluiceway.cluster._conn import ClusterError, NatsConn
from sluiceway.cluster._lease import Leases
from sluiceway.cluster._members import MemberRegistry
from sluiceway.model import PushRecord, RecordError
from sluiceway.store import Applied, Store, WalPos

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js.kv import KeyValue

log = logging.getLogger("sluiceway.cluster")
COMPACTOR = "compactor"


def lease_key(partition: int) -> str:
    return f"partition-{partition}"


def offset_key(partition: int) -> str:
    return f"p-{partition}"


@dataclass(slots=True)
class _Partition:
    n: int
    recorded: int  # the sequence in chunks, as in KV
    last_seq: int  # the last sequence handed to the store
    sub: Subscription | None = None
    pending: deque[tuple[Future[WalPos], int, int]] = field(default_factory=deque)
    unflushed: int = 0  # bytes of records not known to be in chunks
    purge_marks: deque[tuple[float, int]] = field(default_factory=deque)
    stopped: bool = False


class Ingester:
    def __init__(self, conn: NatsConn, cfg: ClusterConfig, store: Store, leases: Leases,
                 members: MemberRegistry, member_id: str) -> None:
        self.conn, self.cfg, self.store = conn, cfg, store
        self.leases, self.members, self.id = leases, members, member_id
        self._offsets: KeyValue = conn.run(
            ensure_kv(conn.js, cfg.bucket("offsets"), cfg.replicas, None), "offsets bucket")
        self._lock = threading.Lock()
        self.parts: dict[int, _Partition] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.tick_s = max(0.5, cfg.lease_ttl / 4)
        self.records = 0  # messages applied
        self.refused_lines = 0  # lines the heads refused (too far behind): counted, logged
        self.bad_messages = 0  # messages that are not records: skipped, logged
        self.takeovers = 0  # partitions taken

    # --- threads ---------------------------------------------------------------------
    def start(self) -> None:
        """The commit thread; `balance` is called by the owner's lease keeper."""
        t = threading.Thread(target=self._commit_loop, name="ingester-commit", daemon=True)
        t.start()
        self._threads.append(t)

    def _commit_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.commit()
            except Exception:  # noqa: BLE001 - the loop must go on
                log.exception("cluster: recording flushed sequences failed; tried again")

    # --- ownership -------------------------------------------------------------------
    def owned(self) -> list[int]:
        with self._lock:
            return sorted(self.parts)

    def balance(self, lost: set[str]) -> None:
        """After the leases were renewed (`lost`: the keys that were not): stop every
        partition whose lease is not held (lost now, or lost at a renewal whose report
        never reached here, as when the keeper's pass failed after it), then take or give
        back partitions towards this ingester's share."""
        held = self.leases.held()
        for p in self.owned():
            key = lease_key(p)
            if key in lost or key not in held:
                self._stop_partition(p, "its lease was lost")
        if self._stop.is_set():
            return
        ingesters = [m for m in self.members.members() if m.has("ingester")] or []
        n = max(1, len(ingesters))
        target = math.ceil(self.cfg.partitions / n)
        owned = self.owned()
        if len(owned) > target:
            p = owned[-1]
            self._stop_partition(p, f"rebalancing to {n} ingesters")
            self.leases.release(lease_key(p))
            return
        # Start looking at a place of our own, so ingesters do not all race for p0.
        first = zlib.crc32(self.id.encode()) % self.cfg.partitions
        for i in range(self.cfg.partitions):
            if len(self.owned()) >= target or self._stop.is_set():
                break
            p = (first + i) % self.cfg.partitions
            if p in self.parts:
                continue
            try:
                if self.leases.acquire(lease_key(p)):
                    self._start_partition(p)
            except ClusterError as exc:
                log.warning("cluster: partition %d not taken now: %s", p, exc)
                self.leases.release(lease_key(p))

    def _recorded(self, p: int) -> int:
        value = kv_value(self.conn, self._offsets, offset_key(p), f"offset of partition {p}")
        return int(json.loads(value or b"{}").get("seq", 0))

    def _start_partition(self, p: int) -> None:
        # What earlier owners flushed is in index objects: read them before serving.
        self.store.sync_index()
        seq = self._recorded(p)
        part = _Partition(p, seq, seq)
        with self._lock:
            self.parts[p] = part
        try:
            part.sub = self.conn.run(self._subscribe(part), f"consume partition {p}")
        except BaseException:
            with self._lock:
                self.parts.pop(p, None)
            raise
        self.takeovers += 1
        log.info("cluster: partition %d taken, consuming from sequence %d", p, seq + 1)

    async def _subscribe(self, part: _Partition) -> Subscription:
        from nats.js import api

        cfg = api.ConsumerConfig(
            deliver_policy=(api.DeliverPolicy.BY_START_SEQUENCE if part.recorded
                            else api.DeliverPolicy.ALL),
            opt_start_seq=part.recorded + 1 if part.recorded else None,
            inactive_threshold=max(30.0, 3 * self.cfg.lease_ttl))

        async def on_msg(msg: Msg) -> None:
            self._on_message(part, msg)

        return await self.conn.js.subscribe(
            self.cfg.subject(part.n), stream=self.cfg.stream_of(part.n), cb=on_msg,
            ordered_consumer=True, config=cfg, pending_msgs_limit=4096,
            pending_bytes_limit=256 << 20)

    def _on_message(self, part: _Partition, msg: Msg) -> None:
        if part.stopped:
            return
        seq = msg.metadata.sequence.stream
        if seq <= part.last_seq:
            return  # delivered again (an ordered consumer that was reset)
        try:
            record = PushRecord.decode(msg.data)
        except RecordError as exc:
            self.bad_messages += 1
            log.error("cluster: partition %d sequence %d is not a record (%s); skipped",
                      part.n, seq, exc)
            part.last_seq = seq
            return
        logged, applied = self.store.ingest_at(record)
        applied.add_done_callback(self._applied)
        part.pending.append((logged, seq, len(msg.data)))
        part.unflushed += len(msg.data)
        part.last_seq = seq
        self.records += 1

    def _applied(self, fut: Future[Applied]) -> None:
        exc = fut.exception()
        if exc is not None:
            return  # the commit thread sees the log's failure and replays the partition
        n = fut.result().rejected
        if n:
            self.refused_lines += n
            log.warning("cluster: %d lines refused by the heads (entry too far behind its "
                        "stream); counted in sluiceway_cluster_refused_lines_total", n)

    def _stop_partition(self, p: int, why: str) -> None:
        with self._lock:
            part = self.parts.pop(p, None)
        if part is None:
            return
        part.stopped = True
        if part.sub is not None:
            try:
                self.conn.run(part.sub.unsubscribe(), f"stop partition {p}")
            except ClusterError as exc:
                log.info("cluster: partition %d consumer not stopped cleanly: %s", p, exc)
        log.info("cluster: partition %d given up: %s", p, why)

    # --- recording -------------------------------------------------------------------
    def commit(self) -> None:
        """Record per partition the sequence fully in chunks; force a flush past the cap;
        purge what was recorded `purge_delay` ago."""
        upto = self.store.checkpoint()
        now = time.monotonic()
        with self._lock:
            parts = list(self.parts.values())
        for part in parts:
            done = part.recorded
            while part.pending and part.pending[0][0].done():
                logged, seq, nbytes = part.pending[0]
                if logged.exception() is not None:
                    self._restart(part, "a record could not be appended to the local log")
                    break
                if upto is None or not logged.result() <= upto:
                    break
                part.pending.popleft()
                part.unflushed -= nbytes
                done = seq
            if done > part.recorded and not part.stopped:
                self._record(part, done)
                part.purge_marks.append((now, done))
            if part.unflushed > self.cfg.flush_cap and part.pending:
                last = part.pending[-1][0]
                if last.done() and last.exception() is None:
                    log.info("cluster: partition %d holds %d unflushed bytes (cap %d): "
                             "flushing", part.n, part.unflushed, self.cfg.flush_cap)
                    # Heads holding this record began after an earlier one: all are written.
                    self.store.flush_before(last.result())
            self._purge(part, now)

    def _record(self, part: _Partition, seq: int) -> None:
        value = json.dumps({"seq": seq, "by": self.id, "at": time.time()}).encode()
        try:
            self.conn.run(self._offsets.put(offset_key(part.n), value),
                          f"offset of partition {part.n}")
        except ClusterError as exc:
            log.warning("cluster: partition %d: flushed sequence %d not recorded now: %s",
                        part.n, seq, exc)
            return
        part.recorded = seq

    def _purge(self, part: _Partition, now: float) -> None:
        upto = 0
        while part.purge_marks and now - part.purge_marks[0][0] >= self.cfg.purge_delay:
            upto = part.purge_marks.popleft()[1]
        if not upto:
            return
        try:
            self.conn.run(self.conn.js.purge_stream(self.cfg.stream_of(part.n),
                                                    subject=self.cfg.subject(part.n),
                                                    seq=upto + 1),
                          f"purge partition {part.n}")
        except ClusterError as exc:
            log.info("cluster: partition %d not purged now: %s", part.n, exc)

    def _restart(self, part: _Partition, why: str) -> None:
        log.error("cluster: partition %d: %s; consuming again from sequence %d", part.n, why,
                  part.recorded + 1)
        self._stop_partition(part.n, why)
        self._start_partition(part.n)

    # --- stop ------------------------------------------------------------------------
    def close(self, flush: bool = True) -> None:
        """Stop consuming; with `flush`, write every head, record the sequences and give
        the leases back, so another ingester takes over at once with nothing to replay."""
        self._stop.set()
        for t in self._threads:
            t.join(10)
        for p in self.owned():
            with self._lock:
                part = self.parts.get(p)
            if part is not None and part.sub is not None:
                part.stopped = True
                with contextlib.suppress(ClusterError):
                    self.conn.run(part.sub.unsubscribe(), f"stop partition {p}")
        if flush:
            try:
                self.store.flush_all()
                self.commit()
            except Exception:  # noqa: BLE001 - what is not recorded is replayed
                log.exception("cluster: final flush failed; the next owner replays")
        self.leases.release_all()
        with self._lock:
            self.parts.clear()

