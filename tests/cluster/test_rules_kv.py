"""The ruler's cluster seams against a real nats-server, in-process (no process boundary
under test): rule groups in KV under any tenant/namespace/group names (what the rules API
takes), for-state documents, and the shard that gives each group to one member."""

from __future__ import annotations

import time

from sluiceway.cluster import (
    ClusterConfig,
    KVBlobs,
    KVRuleStore,
    Leases,
    Member,
    MemberRegistry,
    NatsConn,
    RuleGroupShard,
    rendezvous,
    rule_lease_key,
)
from sluiceway.ruler import GroupKey, parse_group, state_name
from tests.natsprocs import NatsNode

GROUP = """\
name: {name}
rules:
  - alert: A
    expr: vector(1) > 0
"""


def _conn(url: str) -> NatsConn:
    conn = NatsConn(ClusterConfig(urls=(url,), replicas=1))
    assert conn.wait_connected(30)
    return conn


def test_groups_of_any_name_round_trip_through_kv(nats: NatsNode) -> None:
    a, b = _conn(nats.url), _conn(nats.url)
    try:
        sa, sb = KVRuleStore(a, "t-rules", 1), KVRuleStore(b, "t-rules", 1)
        assert sa.load_all().groups == {}
        odd = ("team.a/b", "ns with spaces/and.dots", "gr\u00fcppe=1")
        sa.set_group(odd[0], odd[1], parse_group(GROUP.format(name=odd[2])))
        sa.set_group(odd[0], odd[1], parse_group(GROUP.format(name="b")))
        sa.set_group(odd[0], "other", parse_group(GROUP.format(name="c")))
        sa.set_group("t2", odd[1], parse_group(GROUP.format(name="d")))
        # Read through another connection, as another node would.
        assert [g.name for g in sb.get_namespace(odd[0], odd[1])] == ["b", odd[2]]
        assert sorted(sb.list_groups(odd[0])) == ["ns with spaces/and.dots", "other"]
        got = sb.get_group(*odd)
        assert got is not None and got == parse_group(GROUP.format(name=odd[2]))
        assert sb.get_group(odd[0], odd[1], "missing") is None
        loaded = sb.load_all()
        assert loaded.errors == {}
        assert {t: sorted(ns) for t, ns in loaded.groups.items()} == {
            odd[0]: ["ns with spaces/and.dots", "other"], "t2": ["ns with spaces/and.dots"]}
        sb.delete_namespace(odd[0], odd[1])
        assert sa.get_namespace(odd[0], odd[1]) == []
        sb.delete_group(odd[0], "other", "c")
        assert sa.list_groups(odd[0]) == {}
        assert list(sa.load_all().groups) == ["t2"]
        # For-state documents, by name.
        blobs = KVBlobs(a, "t-state", 1)
        assert blobs.read("0" * 32) is None
        blobs.write("0" * 32, b'{"x": 1}')
        assert KVBlobs(b, "t-state", 1).read("0" * 32) == b'{"x": 1}'
        blobs.remove("0" * 32)
        assert blobs.read("0" * 32) is None
    finally:
        a.close()
        b.close()


def test_each_group_goes_to_one_member_and_moves_when_one_joins(nats: NatsNode) -> None:
    conns = [_conn(nats.url) for _ in range(2)]
    regs: list[MemberRegistry] = []
    try:
        def member(i: int, role: str) -> tuple[Leases, MemberRegistry]:
            me = Member(f"m{i}", role, f"127.0.0.1:{i}", "t", time.time())
            reg = MemberRegistry(conns[i], "t-members", me, 30.0, 1)
            reg.beat()
            regs.append(reg)
            return Leases(conns[i], "t-leases", me.id, 30.0, 1), reg

        keys: list[GroupKey] = [("t", "ns", f"g{i}") for i in range(12)]
        l0, r0 = member(0, "all")
        s0 = RuleGroupShard(l0, r0, "m0", True, 1.0)
        assert s0.claim(keys) == set(keys)  # alone: every group
        l1, r1 = member(1, "ruler")
        s1 = RuleGroupShard(l1, r1, "m1", True, 1.0)
        r0.members(fresh=True)
        r1.members(fresh=True)
        mine1 = {k for k in keys if rendezvous(k, ["m0", "m1"]) == "m1"}
        assert mine1 and mine1 != set(keys)  # 12 groups: both get some
        assert s1.claim(keys) == set()  # still m0's: it gives them back at its next claim
        assert s0.claim(keys) == set(keys) - mine1
        assert s1.claim(keys) == mine1
        assert all(s0.holds(k) != s1.holds(k) for k in keys)
        # A group deleted from the store: its lease is given back.
        gone = sorted(mine1)[0]
        assert s1.claim([k for k in keys if k != gone]) == mine1 - {gone}
        assert not s1.holds(gone) and l0.holder_of(rule_lease_key(gone)) is None
        # A member without the ruler role takes nothing (and gives back what it held).
        assert RuleGroupShard(l0, r0, "m0", False, 1.0).claim(keys) == set()
        assert l0.held() == set()
    finally:
        for r in regs:
            r.stop()
        for c in conns:
            c.close()


def test_deleting_a_group_deletes_its_for_state(nats: NatsNode) -> None:
    """The group's holder is dead (nobody runs it here): the node that takes the DELETE
    removes the for-state document, under the name the ruler gives it."""
    a, b = _conn(nats.url), _conn(nats.url)
    try:
        store_a = KVRuleStore(a, "t-rules", 1, state=KVBlobs(a, "t-state", 1))
        store_b = KVRuleStore(b, "t-rules", 1, state=KVBlobs(b, "t-state", 1))
        blobs = KVBlobs(a, "t-state", 1)
        for name in ("g1", "g2", "kept"):
            store_a.set_group("t", "ns", parse_group(GROUP.format(name=name)))
            blobs.write(state_name("t", "ns", name), b'{"saved_at": 1, "alerts": []}')
        store_b.delete_group("t", "ns", "g1")  # another node takes the DELETE
        assert blobs.read(state_name("t", "ns", "g1")) is None
        assert blobs.read(state_name("t", "ns", "kept")) is not None
        store_b.set_group("t", "other", parse_group(GROUP.format(name="g2")))
        store_a.delete_namespace("t", "other")  # a namespace: each of its groups' state
        assert blobs.read(state_name("t", "other", "g2")) is None
        assert blobs.read(state_name("t", "ns", "g2")) is not None
        assert [g.name for g in store_a.get_namespace("t", "ns")] == ["g2", "kept"]
    finally:
        a.close()
        b.close()
