"""The member registry: who is in the cluster, in a KV bucket (`<prefix>members`).

Each process puts its `Member` (id, role, HTTP address, version, started, last seen)
under its id every `interval_s`; the bucket's TTL (three intervals) forgets a member
that stopped writing, so `members()` lists the live ones without any cleanup. A clean
stop deletes the key at once. Readers (the read path's fan-out to ingesters, and later
`/cluster/status`, heartbeats and global limits) call `members()`, which is cached for
`interval_s / 2` so a busy query path costs NATS little.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sluiceway.cluster._admin import ensure_kv
from sluiceway.cluster._conn import ClusterError, NatsConn

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = logging.getLogger("sluiceway.cluster")


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    role: str  # all | distributor | ingester | querier | compactor
    address: str  # HOST:PORT of its HTTP API
    version: str
    started: float  # Unix seconds
    last_seen: float = 0.0  # Unix seconds, set by each write

    def has(self, role: str) -> bool:
        return self.role in ("all", role)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Member:
        d = json.loads(data)
        return cls(id=str(d["id"]), role=str(d["role"]), address=str(d["address"]),
                   version=str(d["version"]), started=float(d["started"]),
                   last_seen=float(d.get("last_seen") or 0.0))


class MemberRegistry:
    """This process's entry (kept fresh by a thread once `start` is called) and the
    list of live members."""

    def __init__(self, conn: NatsConn, bucket: str, me: Member, interval_s: float,
                 replicas: int) -> None:
        self.conn = conn
        self.me = me
        self.interval_s = interval_s
        self._kv: KeyValue = conn.run(ensure_kv(conn.js, bucket, replicas, 3 * interval_s),
                                      f"KV bucket {bucket}")
        self._cache: tuple[float, list[Member]] = (0.0, [])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        m = Member(self.me.id, self.me.role, self.me.address, self.me.version,
                   self.me.started, time.time())
        self.conn.run(self._kv.put(m.id, m.to_json()), "member registry")

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="members")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except ClusterError as exc:
                log.warning("cluster: member registry not written now: %s", exc)

    def members(self, fresh: bool = False) -> list[Member]:
        """The live members, sorted by id (cached for half an interval unless `fresh`)."""
        from nats.js.errors import NoKeysError

        at, cached = self._cache
        now = time.monotonic()
        if not fresh and now - at < self.interval_s / 2:
            return cached
        try:
            keys = self.conn.run(self._kv.keys(), "member registry")
        except ClusterError as exc:
            if isinstance(exc.__cause__, NoKeysError):
                keys = []
            else:
                raise
        out: list[Member] = []
        for key in keys:
            try:
                entry = self.conn.run(self._kv.get(key), "member registry")
            except ClusterError:
                continue  # expired or deleted meanwhile
            if entry.value:
                try:
                    out.append(Member.from_json(entry.value))
                except (ValueError, KeyError):
                    log.warning("cluster: member registry entry %s cannot be read", key)
        out.sort(key=lambda m: m.id)
        self._cache = (now, out)
        return out

    def stop(self) -> None:
        """Stop writing and leave the registry now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.conn.run(self._kv.delete(self.me.id), "member registry")
        except ClusterError as exc:
            log.info("cluster: member entry not deleted (%s); it expires by itself", exc)
