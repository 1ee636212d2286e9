"""The parts of `/cluster/status` that read NATS (a real nats-server): stream health,
members, the object store's bytes; each part fails alone when NATS is gone."""

from __future__ import annotations

import time
from pathlib import Path

from sluiceway.cluster import ClusterConfig, ClusterStatus, Member, MemberRegistry, NatsConn
from sluiceway.cluster._admin import ensure_stream
from sluiceway.store import LocalDir
from tests.natsprocs import NatsNode


def test_stream_health_members_and_object_bytes(nats: NatsNode,
                                                              tmp_path: Path) -> None:
    cfg = ClusterConfig(urls=(nats.url,), name_prefix="st-", partitions=4,
                        partitions_per_stream=2, replicas=1, timeout=1.0)
    conn = NatsConn(cfg)
    assert conn.wait_connected(30)
    try:
        for k in range(cfg.streams):
            parts = cfg.stream_partitions(k)
            conn.run(ensure_stream(conn.js, cfg.stream_of(parts[0]),
                                   [cfg.subject(p) for p in parts], 1, "t"), "stream")
        for i in range(10):  # partitions 0 and 1 share stream 0
            conn.run(conn.js.publish(cfg.subject(i % 2), b"x", stream=cfg.stream_of(i % 2)),
                     "publish")

        members = MemberRegistry(conn, cfg.bucket("members"),
                                 Member("n1", "all", "127.0.0.1:1", "0.1", time.time()), 5.0, 1)
        members.start()
        store = LocalDir(tmp_path / "objects")
        store.put("a/b", b"12345")
        store.put("c", b"123")
        status = ClusterStatus(conn, cfg, members, "n1", store,
                               singletons=lambda: {"compactor": "n1"})
        doc = status.snapshot()
        assert doc["errors"] == {}
        assert [m["id"] for m in doc["members"]] == ["n1"]
        assert doc["members"][0]["role"] == "all" and doc["members"][0]["age_s"] >= 0
        s0, s1 = doc["streams"]
        assert (s0["name"], s0["messages"], s0["healthy"]) == ("st-ingest-0", 10, True)
        assert (s1["name"], s1["messages"]) == ("st-ingest-1", 0)
        assert doc["object_store"]["objects"] == 2 and doc["object_store"]["bytes"] == 8
        assert doc["singletons"] == {"compactor": "n1"}
        members.stop()
        nats.stop()  # NATS gone: the parts that need it say so, the rest is shown
        doc = status.snapshot()
        assert doc["object_store"]["bytes"] == 8 and doc["streams"] is None
        assert "streams" in doc["errors"]
    finally:
        conn.close()
