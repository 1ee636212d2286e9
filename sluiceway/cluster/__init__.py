"""Cluster mode on NATS JetStream (`sluiceway server --cluster nats://...`).

The pieces, each small and on its own so later work can build on them:

- `ClusterConfig` and the names it derives (streams, subjects, buckets under one prefix),
  `partition_of(tenant, fp, partitions)`;
- `NatsConn`: the process's one NATS connection (its own event loop thread; `run` waits
  for a coroutine from any thread; the first connection is retried, logged, for ever);
- `Leases`: a KV bucket with a TTL, compare-and-set on the revision — partitions,
  the compactor and any other singleton;
- `MemberRegistry` / `Member`: who is in the cluster (id, role, address, version, last
  seen), in a KV bucket whose TTL forgets the dead;
- `Publisher` / `split_record` (write path), `Ingester` (partitions → heads → chunks,
  sequences recorded in KV), `HeadsServer` / `HeadsClient` (unflushed data over NATS
  request/reply), `ClusterSource` (the read seam), and `ClusterNode`, which wires a
  process's role together for the server;
- `KVRuleStore`, `KVBlobs`, `RuleGroupShard`: rules and for-state in KV, one member per
  rule group (`_rulers`); `ActiveStreamsBoard`: every ingester's active streams per
  tenant in KV, read by distributors for `max_global_streams_per_user` (`_streams`).
"""

from sluiceway.cluster._config import ROLES, ClusterConfig, partition_of
from sluiceway.cluster._conn import ClusterError, NatsConn
from sluiceway.cluster._heads import HeadsClient, HeadsServer
from sluiceway.cluster._ingester import Ingester
from sluiceway.cluster._lease import Leases
from sluiceway.cluster._members import Member, MemberRegistry
from sluiceway.cluster._node import ClusterNode, default_objects
from sluiceway.cluster._publish import PayloadTooLarge, Publisher, PublishError, split_record
from sluiceway.cluster._source import ClusterSource

__all__ = ["ROLES", "ClusterConfig", "ClusterError", "ClusterNode", "ClusterSource",
           "HeadsClient", "HeadsServer", "Ingester", "Leases", "Member", "MemberRegistry",
           "NatsConn", "PayloadTooLarge", "PublishError", "Publisher", "default_objects",
           "partition_of", "split_record"]

# Query fan-out, shared heartbeats, the compactor's lease, status (steps 5-8).
from sluiceway.cluster._fanout import (  # noqa: E402
    QUEUE_GROUP,
    FanoutCounts,
    NatsSplitRunner,
    SplitQuerier,
    split_subject,
)
from sluiceway.cluster._heartbeats import SharedHeartbeats  # noqa: E402
from sluiceway.cluster._metrics import ClusterCollector  # noqa: E402
from sluiceway.cluster._ops import ClusterOps  # noqa: E402
from sluiceway.cluster._rulers import (  # noqa: E402
    KVBlobs,
    KVRuleStore,
    RuleGroupShard,
    group_of_lease_key,
    rendezvous,
    rule_lease_key,
)
from sluiceway.cluster._ruleviews import RuleViews  # noqa: E402
from sluiceway.cluster._status import ClusterStatus, PartitionStatus  # noqa: E402
from sluiceway.cluster._streams import ActiveStreamsBoard  # noqa: E402
from sluiceway.cluster._tail import TailRelay  # noqa: E402

__all__ += ["QUEUE_GROUP", "ClusterCollector", "ClusterOps", "ClusterStatus", "FanoutCounts",
            "NatsSplitRunner", "PartitionStatus", "SharedHeartbeats", "SplitQuerier",
            "TailRelay", "split_subject"]
# The ruler in cluster mode and cluster-wide stream limits.
__all__ += ["ActiveStreamsBoard", "KVBlobs", "KVRuleStore", "RuleGroupShard", "RuleViews",
            "group_of_lease_key", "rendezvous", "rule_lease_key"]
