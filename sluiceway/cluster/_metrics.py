"""The cluster's Prometheus metrics (on `/metrics` of every cluster process), from what
`ClusterOps` last read (its status thread): a scrape never waits for NATS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sluiceway.cluster._ingester import COMPACTOR
from sluiceway.cluster._rulers import RULE_LEASE_PREFIX

if TYPE_CHECKING:
    from sluiceway.cluster._ops import ClusterOps


class ClusterCollector(Collector):
    def __init__(self, ops: ClusterOps) -> None:
        self.ops = ops

    def collect(self) -> Iterator[Metric]:
        ops = self.ops
        members = GaugeMetricFamily("sluiceway_cluster_members",
                                    "Live members of the cluster, by role", labels=["role"])
        roles: dict[str, int] = {}
        for m in ops.live_members:
            roles[m.role] = roles.get(m.role, 0) + 1
        for role, n in sorted(roles.items()):
            members.add_metric([role], n)
        yield members
        lag = GaugeMetricFamily("sluiceway_cluster_partition_lag_messages",
                                "Messages of a partition not yet in chunks (flushed)",
                                labels=["partition", "owner"])
        unowned = 0
        for p in ops.last_partitions:
            if p.lag is not None:
                lag.add_metric([str(p.partition), p.owner or ""], p.lag)
            unowned += p.owner is None
        yield lag
        yield GaugeMetricFamily("sluiceway_cluster_partitions_unowned",
                                "Partitions no ingester holds the lease of", value=unowned)
        held = GaugeMetricFamily("sluiceway_cluster_leases_held",
                                 "Leases this process holds", labels=["kind"])
        keys = ops.leases.held()
        held.add_metric(["partition"], sum(1 for k in keys if k.startswith("partition-")))
        held.add_metric(["compactor"], int(COMPACTOR in keys))
        held.add_metric(["rule_group"], sum(1 for k in keys if k.startswith(RULE_LEASE_PREFIX)))
        yield held
        yield CounterMetricFamily(
            "sluiceway_cluster_failovers",
            "Partitions seen moving to a new owner after their owner left the cluster",
            value=ops.failovers)
        splits = CounterMetricFamily(
            "sluiceway_cluster_query_splits",
            "Query time splits: answered by a querier over NATS (remote), run here for a "
            "query taken here (local), answered here for another node (served, failed)",
            labels=["where"])
        c = ops.counts
        for where, n in (("remote", c.sent), ("local", c.local), ("served", c.served),
                         ("failed", c.failed)):
            splits.add_metric([where], n)
        yield splits
        yield CounterMetricFamily("sluiceway_cluster_heartbeats_shared",
                                  "Heartbeats taken here and written to the shared bucket",
                                  value=ops.heartbeats.published)
        yield CounterMetricFamily("sluiceway_cluster_heartbeats_applied",
                                  "Heartbeats other nodes took, kept here",
                                  value=ops.heartbeats.applied)
        yield CounterMetricFamily("sluiceway_cluster_tail_relayed",
                                  "Pushes through any node handed to this node's tail",
                                  value=ops.tail.relayed)
