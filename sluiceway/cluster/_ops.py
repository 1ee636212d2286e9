"""`ClusterOps`: what a cluster process runs besides its role's write and read path (steps
5-8 of the cluster issue), started once its `ClusterNode` is ready:

- the ruler's views gathered from every ruler (`RuleViews`: each group runs on one);
- query fan-out: a member of the queriers' queue group (`SplitQuerier`, roles `querier`
  and `all`) and a `NatsSplitRunner` per query this process takes;
- live tail from every node (`TailRelay`) and heartbeats shared through KV
  (`SharedHeartbeats`);
- the live distributors, for the tenants' rate limits (Loki's `global` strategy), and
  the cluster's active streams per tenant for `max_global_streams_per_user`
  (`ActiveStreamsBoard`, written and read on the status thread's beat);
- `/cluster/status` (`ClusterStatus`) and the Prometheus metrics: partitions (owner,
  lag) are read every `refresh_s` by a thread of its own, so a scrape or a page costs
  NATS nothing; each ingester writes its own partitions' lag to the KV bucket
  `<prefix>lag` on the same beat; owner changes whose old owner left the member registry
  are counted as failovers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluiceway.cluster._admin import ensure_kv, kv_snapshot
from sluiceway.cluster._fanout import (
    FanoutCounts,
    NatsSplitRunner,
    SourceOf,
    SplitQuerier,
    split_subject,
)
from sluiceway.cluster._heartbeats import SharedHeartbeats
from sluiceway.cluster._ingester import COMPACTOR, lease_key, offset_key
from sluiceway.cluster._members import Member
from sluiceway.cluster._node import ClusterNode
from sluiceway.cluster._rulers import group_of_lease_key
from sluiceway.cluster._ruleviews import Answer, RuleViews
from sluiceway.cluster._status import ClusterStatus, PartitionStatus
from sluiceway.cluster._streams import ActiveStreamsBoard
from sluiceway.cluster._tail import TailRelay
from sluiceway.logql import ExecOptions, LogSource, QueryParams
from sluiceway.model import EntryBlock, PipelineRegistry

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = logging.getLogger("sluiceway.cluster")


class ClusterOps:
    def __init__(self, node: ClusterNode, registry: PipelineRegistry,
                 tail_publish: Callable[[str, list[EntryBlock]], None],
                 server_loop: asyncio.AbstractEventLoop, source_of: SourceOf,
                 options_of: Callable[[], ExecOptions], heartbeat_forget_s: float,
                 refresh_s: float = 5.0, rule_views: Answer | None = None) -> None:
        """`rule_views`: this process's ruler views (`RuleViews`), answered to the other
        members and gathered from them for the Prometheus-style rules and alerts API."""
        assert node.members is not None and node.leases is not None
        self.node, self.cfg, self.conn = node, node.cfg, node.conn
        self.members, self.leases = node.members, node.leases
        self.refresh_s = refresh_s
        self.counts = FanoutCounts()
        self.subject = split_subject(self.cfg.name_prefix)
        self.querier: SplitQuerier | None = None
        if self.cfg.has("querier"):
            self.querier = SplitQuerier(self.conn.nc, self.conn.loop, self.subject, source_of,
                                        options_of, os.cpu_count() or 1, self.counts)
            self.conn.run(self.querier.start(), "queriers' queue group")
        self.heartbeats = SharedHeartbeats(self.conn, self.cfg.bucket("heartbeats"),
                                           registry, node.id, heartbeat_forget_s,
                                           self.cfg.replicas)
        self.tail = TailRelay(self.conn, self.cfg, tail_publish, server_loop)
        self.rule_views: RuleViews | None = None
        if rule_views is not None:
            self.rule_views = RuleViews(self.conn, self.cfg, self.members, node.id,
                                        rule_views)
            self.conn.run(self.rule_views.start(), "ruler views")
        self._offsets: KeyValue = self.conn.run(
            ensure_kv(self.conn.js, self.cfg.bucket("offsets"), self.cfg.replicas, None),
            "offsets bucket")
        # Each owner's count of its partitions' lag, forgotten when not renewed.
        self._lags: KeyValue = self.conn.run(
            ensure_kv(self.conn.js, self.cfg.bucket("lag"), self.cfg.replicas,
                      3 * refresh_s), "lag bucket")
        self.streams = ActiveStreamsBoard(self.conn, self.cfg.bucket("active-streams"),
                                          node.id, self.cfg.replicas, refresh_s, node.store,
                                          self.cfg.has("ingester"))
        self._distributors = 1
        self.live_members: list[Member] = []
        self.failovers = 0  # partitions whose owner left and another took over (seen here)
        self._parts: list[PartitionStatus] = []
        self._parts_at = 0.0
        self._parts_error: str | None = None
        self.status = ClusterStatus(self.conn, self.cfg, self.members, node.id, node.objects,
                                    self.partitions, self.singletons, self.node_counts,
                                    self.rule_groups)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                        name="cluster-status")
        self._thread.start()

    # --- queries -----------------------------------------------------------------------
    def runner(self, local: Callable[[QueryParams], LogSource], floor: int | None,
               parallelism: int) -> NatsSplitRunner:
        """The split runner of one query taken here: up to `parallelism` splits per live
        querier in flight (the queriers as the status thread last counted them)."""
        # The status thread's last reading: a query never waits for NATS (nor fails
        # because the member registry did not answer) just to size its fan-out.
        queriers = sum(1 for m in self.live_members if m.has("querier")) or 1
        return NatsSplitRunner(self.conn.nc, self.conn.loop, self.subject, local, floor,
                               max(1, parallelism) * queriers, self.counts)

    # --- limits ------------------------------------------------------------------------
    def distributors(self) -> int:
        """Live distributors, as the status thread last read the member registry (the
        push path never waits for NATS for it): each enforces its share."""
        return self._distributors

    # --- status ------------------------------------------------------------------------
    def singletons(self) -> dict[str, str | None]:
        return {COMPACTOR: self.leases.holder_of(COMPACTOR)}

    def rule_groups(self) -> list[dict[str, str]]:
        """Which member evaluates which rule group (the groups' leases)."""
        leases = self.conn.run(kv_snapshot(self.leases.kv), "rule group leases",
                               timeout=4 * self.cfg.timeout)
        out: list[dict[str, str]] = []
        for lease, holder in leases.items():
            key = group_of_lease_key(lease)
            if key is not None:
                out.append({"tenant": key[0], "namespace": key[1], "group": key[2],
                            "holder": holder.decode()})
        return sorted(out, key=lambda d: (d["tenant"], d["namespace"], d["group"]))

    @property
    def last_partitions(self) -> list[PartitionStatus]:
        """As the status thread last read them (for metrics: no NATS call)."""
        return self._parts

    def partitions(self) -> list[PartitionStatus]:
        if self._parts_error is not None and not self._parts:
            raise RuntimeError(self._parts_error)
        return list(self._parts)

    def node_counts(self) -> dict[str, Any]:
        ingester = self.node.ingester
        return {"node": {
            "id": self.node.id, "partitions_owned": ingester.owned() if ingester else [],
            "leases_held": sorted(self.leases.held()),
            "failovers_seen": self.failovers,
            "query_splits": {"sent": self.counts.sent, "local": self.counts.local,
                             "served": self.counts.served, "failed": self.counts.failed},
            "heartbeats": {"shared": self.heartbeats.published,
                           "applied": self.heartbeats.applied},
            "tail": {"sessions": self.tail.users, "relayed": self.tail.relayed},
            "active_streams": self.streams.tenants(),
            "partitions_read_at": self._parts_at}}

    def _refresh_loop(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - shown in the status, tried again
                self._parts_error = f"{type(exc).__name__}: {exc}"
            self.refresh_streams()
            if self._stop.wait(self.refresh_s):
                return

    def refresh(self) -> None:
        """Read the members; write this ingester's partitions' lag; read every
        partition's owner, flushed sequence and lag (concurrently)."""
        members = self.members.members()
        self.live_members = members
        live = {m.id for m in members}
        self._distributors = max(1, sum(1 for m in members if m.has("distributor")))
        parts = self.conn.run(self._read_partitions(), "partition status",
                              timeout=4 * self.cfg.timeout)
        before = {p.partition: p.owner for p in self._parts}
        for p in parts:
            old = before.get(p.partition)
            if old and p.owner and old != p.owner and old not in live:
                self.failovers += 1
        self._parts, self._parts_at, self._parts_error = parts, time.time(), None

    def refresh_streams(self) -> None:
        """Share this ingester's active streams and read everyone's (after the
        partitions, so the status they show is as fresh as before)."""
        try:
            self.streams.refresh()
        except Exception as exc:  # noqa: BLE001 - the last reading stays; tried again
            log.warning("cluster: active streams not shared now: %s", exc)

    async def _own_lags(self) -> None:
        """Each partition this process consumes: messages after its flushed sequence =
        those consumed and not yet in chunks (the ingester's pending records) + those
        not yet delivered (its consumer's `num_pending`, asked of the stream's server:
        no new consumer, no Raft operation)."""
        import json

        ingester = self.node.ingester
        if ingester is None:
            return
        with ingester._lock:  # the ingester's own table of the partitions it consumes
            mine = list(ingester.parts.values())

        async def one(part: Any) -> None:
            undelivered = 0
            if part.sub is not None:
                try:
                    undelivered = int((await part.sub.consumer_info()).num_pending or 0)
                except Exception:  # noqa: BLE001 - a consumer being reset: next time
                    return
            value = {"owner": self.node.id, "lag": len(part.pending) + undelivered,
                     "consumed": part.last_seq, "flushed": part.recorded, "at": time.time()}
            await self._lags.put(offset_key(part.n), json.dumps(value).encode())

        await asyncio.gather(*(one(part) for part in mine), return_exceptions=True)

    async def _read_partitions(self) -> list[PartitionStatus]:
        import json

        from nats.js.errors import KeyNotFoundError

        await self._own_lags()
        leases_kv = await self.conn.js.key_value(self.cfg.bucket("leases"))

        async def value(kv: KeyValue, key: str) -> bytes | None:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                return None
            return entry.value or None

        async def one(p: int) -> PartitionStatus:
            owner_b, offset_b, lag_b = await asyncio.gather(
                value(leases_kv, lease_key(p)), value(self._offsets, offset_key(p)),
                value(self._lags, offset_key(p)))
            owner = owner_b.decode() if owner_b else None
            flushed = int(json.loads(offset_b).get("seq", 0)) if offset_b else 0
            said = json.loads(lag_b) if lag_b else {}
            fresh = said.get("owner") == owner and owner is not None
            return PartitionStatus(p, self.cfg.stream_of(p), owner, flushed,
                                   int(said.get("consumed", 0)) if fresh else 0,
                                   int(said["lag"]) if fresh else None)

        return list(await asyncio.gather(*(one(p) for p in range(self.cfg.partitions))))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.heartbeats.close()
        if self.rule_views is not None:
            try:
                self.conn.run(self.rule_views.stop(), "ruler views", timeout=5)
            except Exception as exc:  # noqa: BLE001 - stopping anyway
                log.info("cluster: ruler views not stopped: %s", exc)
        if self.querier is not None:
            try:
                self.conn.run(self.querier.stop(), "queriers' queue group", timeout=5)
            except Exception as exc:  # noqa: BLE001 - stopping anyway
                log.info("cluster: leaving the queriers' queue group: %s", exc)
