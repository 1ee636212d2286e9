"""The read path's unflushed data: each ingester answers, over NATS request/reply on
`<prefix>heads.<member id>`, with what its heads hold (not yet in chunks) for a
(tenants, matchers, range); `HeadsClient.fetch` asks every other live ingester at once.

Why request/reply to the owners and not reading the partition tail from JetStream: the
owner already holds its partitions' unflushed lines in memory, sorted and deduplicated
per stream, while a tail read would make every querier fetch and decode every message
after the recorded sequence of every partition of every tenant on every query (up to
`flush_cap` per partition). See ARCHITECTURE.md, "Cluster mode".

Consistency with the index: an answer made after a flush released its heads must not
miss what that flush wrote. Each answer carries the ingester's count of finished chunk
writes, taken after its snapshot and after every write that had begun before it ended
(`Store.writes_done`); a querier that sees a count it has not synced past lists the
index first (`Store.sync_index`), so a line is always in the answer or in the index. An
ingester that leaves the member list makes the querier list the index too: what it wrote
just before it died is not in its partitions' replay.

Answer messages: records (`PushRecord.encode`, one tenant each, below `max_payload`) to
the request's reply subject, then an end message (header `Sluiceway-End`: the count of
records, `Sluiceway-Writes`: the count of finished writes). A member that does not end
its answer within the timeout is left out (dead: its partitions are replayed by their
next owner); `HeadsClient.missing` counts those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING

from sluiceway.cluster._config import ClusterConfig
from sluiceway.cluster._conn import NatsConn
from sluiceway.cluster._members import MemberRegistry
from sluiceway.model import EntryBlock, Matcher, PushRecord, SeriesRef, fingerprint
from sluiceway.store import Store

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

log = logging.getLogger("sluiceway.cluster")
END, WRITES = "Sluiceway-End", "Sluiceway-Writes"
_HEADROOM = 8 << 10

Found = list[tuple[SeriesRef, EntryBlock]]


def encode_request(tenants: list[str], matchers: list[Matcher], start: int, end: int) -> bytes:
    return json.dumps({"tenants": tenants, "start": start, "end": end,
                       "matchers": [[m.name, m.op, m.value] for m in matchers]}).encode()


def decode_request(data: bytes) -> tuple[list[str], list[Matcher], int, int]:
    d = json.loads(data)
    return ([str(t) for t in d["tenants"]],
            [Matcher(str(n), str(op), str(v)) for n, op, v in d["matchers"]],
            int(d["start"]), int(d["end"]))


def answer_records(found: Found, max_bytes: int) -> list[bytes]:
    """`found` as encoded records, one tenant each, each at most about `max_bytes`."""
    out: list[bytes] = []
    by_tenant: dict[str, list[EntryBlock]] = {}
    for ref, block in found:
        by_tenant.setdefault(ref.tenant, []).append(block)
    for tenant, blocks in by_tenant.items():
        batch: list[EntryBlock] = []
        size = 0
        for b in blocks:
            for piece in _pieces(b, max_bytes):
                if batch and size + piece.nbytes + 256 > max_bytes:
                    out.append(PushRecord(tenant, batch).encode())
                    batch, size = [], 0
                batch.append(piece)
                size += piece.nbytes + 256
        if batch:
            out.append(PushRecord(tenant, batch).encode())
    return out


def _pieces(b: EntryBlock, max_bytes: int) -> list[EntryBlock]:
    if b.nbytes + 16 * len(b) + 1024 <= max_bytes or len(b) <= 1:
        return [b]
    half = len(b) // 2
    return _pieces(b.slice(0, half), max_bytes) + _pieces(b.slice(half, len(b)), max_bytes)


class HeadsServer:
    """Answers heads requests for this member from `store`."""

    def __init__(self, conn: NatsConn, cfg: ClusterConfig, store: Store, member_id: str) -> None:
        self.conn, self.cfg, self.store, self.id = conn, cfg, store, member_id
        self._sub: Subscription | None = None
        self.answered = 0

    def start(self) -> None:
        self._sub = self.conn.run(self.conn.nc.subscribe(
            self.cfg.heads_subject(self.id), cb=self._on_request), "heads subscription")

    def answer(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> tuple[Found, int]:
        """(what the heads hold, the count of finished chunk writes) — see the module."""
        found = self.store.memory_blocks(tenants, matchers, start, end)
        begun = self.store.writes_started
        deadline = time.monotonic() + 30
        while self.store.writes_done < begun and time.monotonic() < deadline:
            time.sleep(0.005)  # a write that released heads before the snapshot: finish
        return found, self.store.writes_done

    async def _on_request(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            tenants, matchers, start, end = decode_request(msg.data)
            found, writes = await asyncio.to_thread(self.answer, tenants, matchers, start, end)
            records = answer_records(found, self.cfg.max_payload - _HEADROOM)
        except Exception as exc:  # noqa: BLE001 - answer with the error, never hang
            log.exception("cluster: heads request failed")
            await self.conn.nc.publish(msg.reply, b"", headers={END: "-1", "Error": str(exc)})
            return
        for data in records:
            await self.conn.nc.publish(msg.reply, data)
        await self.conn.nc.publish(msg.reply, b"", headers={END: str(len(records)),
                                                            WRITES: str(writes)})
        self.answered += 1

    def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(OSError):
                self.conn.run(self._sub.unsubscribe(), "heads subscription")


class HeadsClient:
    """Asks every other live ingester for its unflushed data, and syncs the local index
    when an answer says chunks were written that this process has not listed since."""

    def __init__(self, conn: NatsConn, cfg: ClusterConfig, store: Store,
                 members: MemberRegistry, me: str, local: HeadsServer | None) -> None:
        self.conn, self.cfg, self.store, self.members, self.me = conn, cfg, store, members, me
        self.local = local
        self._synced: dict[str, int] = {}  # member -> its write count listed past
        self._known: set[str] = set()  # the other ingesters at the last fetch
        self.missing = 0  # answers not received in time (members left out)

    def fetch(self, tenants: list[str], matchers: list[Matcher], start: int,
              end: int) -> Found:
        """What every other ingester's heads hold for the query; the local heads are
        read with the local store."""
        others = [m.id for m in self.members.members()
                  if m.has("ingester") and m.id != self.me]
        gone = self._known - set(others)
        self._known = set(others)
        if gone:
            # An ingester left (died, or stopped): what it flushed last may not be listed
            # here yet, and its partitions' new owners replay only after that.
            for member in gone:
                self._synced.pop(member, None)
            self.store.sync_index()
        if not others:
            return []
        req = encode_request(tenants, matchers, start, end)
        answers = self.conn.run(self._ask_all(others, req), "heads requests",
                                timeout=self.cfg.timeout + 5)
        found: Found = []
        stale = False
        for member, got in zip(others, answers, strict=True):
            if got is None:
                self.missing += 1
                continue
            records, writes = got
            if writes > self._synced.get(member, -1):
                stale = True
                self._synced[member] = writes
            for data in records:
                rec = PushRecord.decode(data)
                found.extend((SeriesRef(rec.tenant, fingerprint(b.labels), b.labels), b)
                             for b in rec.blocks)
        if stale:
            self.store.sync_index()
        return found

    async def _ask_all(self, members: list[str], req: bytes
                       ) -> list[tuple[list[bytes], int] | None]:
        return list(await asyncio.gather(*(self._ask(m, req) for m in members)))

    async def _ask(self, member: str, req: bytes) -> tuple[list[bytes], int] | None:
        nc = self.conn.nc
        inbox = nc.new_inbox()
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await nc.subscribe(inbox, cb=on_msg)
        try:
            await nc.publish(self.cfg.heads_subject(member), req, reply=inbox)
            records: list[bytes] = []
            deadline = time.monotonic() + self.cfg.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    msg = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    return None
                headers = msg.headers or {}
                if END in headers:
                    if headers[END] == "-1":
                        log.warning("cluster: member %s could not answer: %s", member,
                                    headers.get("Error", "?"))
                        return None
                    return records, int(headers.get(WRITES, "0"))
                records.append(msg.data)
        finally:
            await sub.unsubscribe()
