"""The cluster's KV seams against a real nats-server: leases (bucket TTL + compare-and-
set on the revision) and the member registry."""

from __future__ import annotations

import time
from pathlib import Path

from sluiceway.cluster import ClusterConfig, Leases, Member, MemberRegistry, NatsConn
from tests.natsprocs import NatsNode, nats_or_skip


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
        # Exclusivity and release on a bucket whose TTL no pause of this (shared, loaded)
        # machine reaches: a key that expired mid-way would make these checks lie.
        # replicas 3 on a single server: capped to 1 (logged), not refused.
        la = Leases(a, "t-leases", "A", ttl_s=60.0, replicas=3)
        lb = Leases(b, "t-leases", "B", ttl_s=60.0, replicas=3)
        assert la.acquire("p0")
        assert not lb.acquire("p0")
        assert lb.holder_of("p0") == "A"
        assert la.renew() == set()
        assert not lb.acquire("p0")
        assert lb.acquire("p1") and la.holder_of("p1") == "B"
        lb.release("p1")
        assert la.acquire("p1")  # released: free at once, no TTL wait
        # Take-over on a bucket with a short TTL: A stops renewing, its key expires with
        # the bucket TTL and B takes it.
        sa = Leases(a, "t-leases-short", "A", ttl_s=1.0, replicas=1)
        sb = Leases(b, "t-leases-short", "B", ttl_s=1.0, replicas=1)
        assert sa.acquire("p0")
        _poll(lambda: sb.acquire("p0"))
        assert sa.holder_of("p0") == "B"
        # A's compare-and-set on its old revision fails: A learns it lost p0.
        assert sa.renew() == {"p0"}
        assert sa.held() == set()
        assert not sa.acquire("p0")
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


def test_expired_lease_is_reported_lost_and_free_for_another_holder(nats: NatsNode) -> None:
    """The bucket TTL removes a key nobody renews: its holder's next renewal (compare-and-
    set on a revision that no longer exists: "wrong last sequence: 0") says lost, and
    another holder takes the key."""
    a, b = _conn(nats.url), _conn(nats.url)
    try:
        la = Leases(a, "t-expiry", "A", ttl_s=1.0, replicas=1)
        lb = Leases(b, "t-expiry", "B", ttl_s=1.0, replicas=1)
        assert la.acquire("p0")
        # A does not renew (the test is its keeper): the key expires, nobody takes it.
        _poll(lambda: lb.holder_of("p0") is None)
        assert la.held() == {"p0"}
        assert la.renew_one("p0") is False
        assert la.held() == set()
        assert lb.acquire("p0") and la.holder_of("p0") == "B"
        assert not la.acquire("p0")
    finally:
        a.close()
        b.close()


def test_deleted_or_purged_lease_is_reported_lost(nats: NatsNode) -> None:
    a = _conn(nats.url)
    try:
        la = Leases(a, "t-gone", "A", ttl_s=60.0, replicas=1)
        assert la.acquire("p0") and la.acquire("p1")
        a.run(la.kv.delete("p0"), "delete")
        a.run(la.kv.purge("p1"), "purge")
        assert la.renew() == {"p0", "p1"}
        assert la.held() == set()
        assert la.acquire("p0") and la.acquire("p1")  # free again
    finally:
        a.close()


def test_acquire_when_the_key_expires_between_create_and_its_read_back(
        nats: NatsNode) -> None:
    """nats-py's `create` tries a compare-and-set on "no key", and when that fails reads
    the key to tell a live one from a deletion marker. When the holder's key expires in
    between, the read finds nothing: the key is free, so acquire takes it (it used to
    raise, and the node's lease keeper skipped handing its lost leases to the ingester)."""
    a, b = _conn(nats.url), _conn(nats.url)
    try:
        la = Leases(a, "t-race", "A", ttl_s=60.0, replicas=1)
        lb = Leases(b, "t-race", "B", ttl_s=60.0, replicas=1)
        assert la.acquire("p0")
        kv = lb.kv
        name = "_get" if hasattr(kv, "_get") else "get"  # what nats-py's create reads with
        real_get = getattr(kv, name)
        paused: list[str] = []

        async def expire_then_get(key: str, *args: object, **kwargs: object) -> object:
            # The pause point: A's key goes exactly as the bucket TTL removes it (every
            # message of the subject, no marker) before B's read-back.
            if not paused:  # once
                paused.append(key)
                await b.js.purge_stream(f"KV_{lb.bucket}", subject=f"$KV.{lb.bucket}.{key}")
            return await real_get(key, *args, **kwargs)

        setattr(kv, name, expire_then_get)
        assert lb.acquire("p0")
        assert paused == ["p0"]
        assert lb.holder_of("p0") == "B"
        assert la.renew() == {"p0"}
    finally:
        a.close()
        b.close()


def test_renewal_whose_answer_was_lost_keeps_the_lease(nats: NatsNode) -> None:
    """A renewal that reached NATS but whose answer did not (a timeout) moved the key's
    revision past the one the holder remembers: the next renewal must not call the lease
    lost, since the key is still the holder's (renew's contract: a NATS failure loses
    nothing). A write by another holder still wins."""
    a, b = _conn(nats.url), _conn(nats.url)
    try:
        la = Leases(a, "t-lostanswer", "A", ttl_s=60.0, replicas=1)
        lb = Leases(b, "t-lostanswer", "B", ttl_s=60.0, replicas=1)
        assert la.acquire("p0")
        # A's renewal as it lands on the server, its answer never read by Leases.
        rev = a.run(la.kv.get("p0"), "get").revision
        a.run(la.kv.update("p0", b"A", last=rev), "update")
        assert la.renew() == set()
        assert la.held() == {"p0"}
        assert not lb.acquire("p0")
        # Someone else's write (a stale holder's forced take-over) is still a loss.
        rev = b.run(lb.kv.get("p0"), "get").revision
        b.run(lb.kv.update("p0", b"B", last=rev), "update")
        assert la.renew() == {"p0"}
    finally:
        a.close()
        b.close()
