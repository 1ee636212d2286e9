"""The cluster's KV seams against a real nats-server: leases (bucket TTL + compare-and-
set on the revision) and the member registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluiceway.cluster import ClusterConfig, Leases, Member, MemberRegistry, NatsConn
from tests.natsprocs import NatsNode, nats_or_skip, single_node


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsNode]:
    node = single_node(nats_or_skip(), tmp_path / "nats")
    yield node
    node.stop()


def _conn(url: str) -> NatsConn:
    conn = NatsConn(ClusterConfig(urls=(url,), replicas=3))
    assert conn.wait_connected(30)
    return conn


def _poll(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_lease_is_exclusive_renewed_and_taken_over_after_ttl(nats: NatsNode) -> None:
    a, b = _conn(nats.url), _conn(nats.url)
    try:
        # replicas 3 on a single server: capped to 1 (logged), not refused.
        la = Leases(a, "t-leases", "A", ttl_s=2.0, replicas=3)
        lb = Leases(b, "t-leases", "B", ttl_s=2.0, replicas=3)
        assert la.acquire("p0")
        assert not lb.acquire("p0")
        assert lb.holder_of("p0") == "A"
        assert la.renew() == set()
        assert lb.acquire("p1") and la.holder_of("p1") == "B"
        # A stops renewing: its key expires with the bucket TTL and B takes it.
        _poll(lambda: lb.acquire("p0"))
        assert la.holder_of("p0") == "B"
        # A's compare-and-set on its old revision fails: A learns it lost p0.
        assert la.renew() == {"p0"}
        assert la.held() == set()
        lb.release("p1")
        assert la.acquire("p1")  # released: free at once, no TTL wait
    finally:
        a.close()
        b.close()


def test_member_registry_lists_live_members_and_forgets_stopped(nats: NatsNode) -> None:
    a, b = _conn(nats.url), _conn(nats.url)
    try:
        ra = MemberRegistry(a, "t-members", Member("a", "all", "127.0.0.1:1", "1", 1.0), 0.5, 1)
        rb = MemberRegistry(b, "t-members", Member("b", "querier", "127.0.0.1:2", "1", 2.0),
                            0.5, 1)
        ra.start()
        rb.start()
        got = ra.members(fresh=True)
        assert [(m.id, m.role, m.address) for m in got] == [
            ("a", "all", "127.0.0.1:1"), ("b", "querier", "127.0.0.1:2")]
        assert all(m.last_seen > 0 for m in got)
        rb.stop()
        assert [m.id for m in ra.members(fresh=True)] == ["a"]
        ra.stop()
    finally:
        a.close()
        b.close()


def test_connection_retries_until_nats_is_up(tmp_path: Path) -> None:
    binary = nats_or_skip()
    node = NatsNode(binary, tmp_path / "late")  # started below, after a stop
    node.stop()
    conn = NatsConn(ClusterConfig(urls=(node.url,), timeout=1.0))
    try:
        assert not conn.wait_connected(1.5)
        node.start()
        assert conn.wait_connected(60)
    finally:
        conn.close()
        node.stop()
