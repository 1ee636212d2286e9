"""Cluster mode on NATS JetStream (see ARCHITECTURE.md, "Cluster mode")."""

from sluiceway.cluster._fanout import (
    QUEUE_GROUP,
    FanoutCounts,
    NatsSplitRunner,
    SplitQuerier,
    split_subject,
)

__all__ = ["QUEUE_GROUP", "FanoutCounts", "NatsSplitRunner", "SplitQuerier", "split_subject"]
