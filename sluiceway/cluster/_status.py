"""`GET /cluster/status`: what the cluster looks like from this node, as JSON.

- `members`: every live member (the member registry) with role, HTTP address, version,
  when it started and when it last wrote its entry (`age_s` ago);
- `partitions`: each partition's stream, owner (the ingester holding its lease, or null),
  flushed and consumed sequences and `lag`: its messages not yet in chunks, as its owner
  counts them (consumed but not flushed, plus not yet delivered to it), or null when no
  owner has said so lately;
- `streams`: each ingest stream's messages, bytes, sequences, and health: its Raft
  leader and each replica's state (`current`, `offline`, `lag` in operations behind);
  `healthy` is a leader and every replica current and online;
- `object_store`: the shared bucket's bytes and objects (a listing, cached for
  `OBJECT_STATS_S`: listing scans metadata);
- `singletons`: who holds each singleton's lease (the compactor);
- `rule_groups`: each rule group's tenant, namespace, name and `holder`, the member
  whose ruler evaluates it (its lease).

Every part is read when asked and each fails alone: a part NATS cannot answer now is
`null` with its error in `errors`, the rest is still shown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sluiceway.cluster._config import ClusterConfig
from sluiceway.cluster._conn import NatsConn
from sluiceway.cluster._members import MemberRegistry

if TYPE_CHECKING:
    from sluiceway.store import ObjectStore

OBJECT_STATS_S = 30.0


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    partition: int
    stream: str
    owner: str | None  # the ingester holding its lease (None: nobody now)
    flushed_seq: int  # the stream sequence that is fully in chunks (0: none yet)
    consumed_seq: int  # the last sequence its owner consumed (0: unknown)
    lag: int | None  # messages after flushed_seq (None: no owner has said lately)


async def stream_health(conn: NatsConn, name: str) -> dict[str, Any]:
    info = await conn.js.stream_info(name)
    st, cl = info.state, info.cluster
    replicas = [{"name": p.name, "current": bool(p.current), "offline": bool(p.offline),
                 "active_s": p.active, "lag": p.lag or 0} for p in (cl.replicas or [])] \
        if cl is not None else []
    leader = cl.leader if cl is not None else None
    return {"name": name, "messages": st.messages, "bytes": st.bytes,
            "first_seq": st.first_seq, "last_seq": st.last_seq,
            "replicas_configured": info.config.num_replicas or 1, "leader": leader,
            "replicas": replicas,
            # a single server has no cluster info: its one copy is the leader
            "healthy": (cl is None or bool(leader))
            and all(r["current"] and not r["offline"] for r in replicas)}


class ClusterStatus:
    """Builds the `/cluster/status` document (module docstring). `partitions` gives the
    partitions' owners and flushed sequences (the ingesters' records); `singletons`
    names the lease keys to report; `extra` adds this node's counters."""

    def __init__(self, conn: NatsConn, cfg: ClusterConfig, members: MemberRegistry,
                 me: str, objstore: ObjectStore | None = None,
                 partitions: Callable[[], list[PartitionStatus]] | None = None,
                 singletons: Callable[[], dict[str, str | None]] | None = None,
                 extra: Callable[[], dict[str, Any]] | None = None,
                 rule_groups: Callable[[], list[dict[str, str]]] | None = None) -> None:
        self.conn, self.cfg, self.members, self.me = conn, cfg, members, me
        self.objstore = objstore
        self.partitions = partitions
        self.singletons = singletons
        self.extra = extra
        self.rule_groups = rule_groups
        self._objects: tuple[float, dict[str, Any]] | None = None
        self._objects_lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        """The document; blocking (call it on a worker thread)."""
        errors: dict[str, str] = {}
        now = time.time()

        def part(name: str, fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - each part fails alone, said why
                errors[name] = f"{type(exc).__name__}: {exc}"
                return None

        members = part("members", lambda: [
            {**asdict(m), "age_s": round(max(0.0, now - m.last_seen), 3)}
            for m in self.members.members(fresh=True)])
        doc: dict[str, Any] = {
            "mode": "cluster", "me": self.me, "role": self.cfg.role,
            "name_prefix": self.cfg.name_prefix, "partitions_total": self.cfg.partitions,
            "members": members,
            "partitions": part("partitions", lambda: [
                asdict(p) for p in (self.partitions() if self.partitions else [])]),
            "streams": part("streams", self._streams),
            "object_store": part("object_store", self._object_stats),
            "singletons": part("singletons", lambda: self.singletons() if self.singletons
                               else {}),
            "rule_groups": part("rule_groups", lambda: self.rule_groups() if self.rule_groups
                                else []),
        }
        if self.extra is not None:
            doc.update(part("node", self.extra) or {})
        doc["errors"] = errors
        return doc

    def _streams(self) -> list[dict[str, Any]]:
        return [self.conn.run(stream_health(self.conn, self.cfg.stream_of(
            self.cfg.stream_partitions(k)[0])), "stream info")
            for k in range(self.cfg.streams)]

    def _object_stats(self) -> dict[str, Any] | None:
        if self.objstore is None:
            return None
        with self._objects_lock:
            cached = self._objects
            if cached is not None and time.monotonic() - cached[0] < OBJECT_STATS_S:
                return cached[1]
            infos = self.objstore.list()
            stats = {"store": repr(self.objstore), "objects": len(infos),
                     "bytes": sum(i.size for i in infos), "listed_at": time.time()}
            self._objects = (time.monotonic(), stats)
            return stats
