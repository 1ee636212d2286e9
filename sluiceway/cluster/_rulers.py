"""The ruler in cluster mode: rules shared through the cluster's KV, each rule group
evaluated by exactly one live member, its `for` state where the next holder finds it.

- `KVRuleStore`: the ruler's `RuleStore` on the KV bucket `<prefix>rules`. One key per
  group, `<tenant>.<namespace>.<group>` (each part base64url, so any name is a valid
  key), its value the group's YAML as Loki's rules API takes it. The rules API of every
  node reads and writes the same groups; every ruler reads the bucket at its
  `poll_interval` (at once on the node that took the write).
- `KVBlobs`: the groups' for-state documents in the bucket `<prefix>ruler-state`; a
  group deleted through the rules API (on any node) loses its document at once.
- `RuleGroupShard`: which groups this member evaluates. The holder of a group is chosen
  by rendezvous hashing of the group over the live members with the `ruler` role (or
  `all`), and it takes the group's lease (`rule-<base64url of tenant/ns/group>` in the
  leases bucket: create, then compare-and-set renewals by the node's one lease keeper).
  A member that is no longer the choice (one joined) gives the lease back at its next
  tick; one that died loses it after `lease_ttl`, and the next choice takes it then.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from sluiceway.cluster._admin import ensure_kv, kv_snapshot, kv_token, kv_untoken, kv_value
from sluiceway.cluster._conn import ClusterError, NatsConn
from sluiceway.cluster._lease import Leases
from sluiceway.cluster._members import MemberRegistry
from sluiceway.ruler import (
    GroupKey,
    LoadedRules,
    RuleFormatError,
    RuleGroup,
    StateBlobs,
    dump_group,
    parse_group,
    state_name,
)

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = logging.getLogger("sluiceway.cluster")
RULE_LEASE_PREFIX = "rule-"


def group_kv_key(tenant: str, namespace: str, group: str) -> str:
    return f"{kv_token(tenant)}.{kv_token(namespace)}.{kv_token(group)}"


def group_of_kv_key(key: str) -> GroupKey:
    t, ns, g = key.split(".")
    return kv_untoken(t), kv_untoken(ns), kv_untoken(g)


def rule_lease_key(key: GroupKey) -> str:
    return RULE_LEASE_PREFIX + kv_token("\0".join(key))


def group_of_lease_key(lease: str) -> GroupKey | None:
    """The group of a lease key (None: not a rule group's lease)."""
    if not lease.startswith(RULE_LEASE_PREFIX):
        return None
    parts = kv_untoken(lease[len(RULE_LEASE_PREFIX):]).split("\0")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


class _Bucket:
    """A KV bucket opened on first use: a node whose NATS is not reachable yet answers
    with ClusterError (the API's 503), and the ruler tries again at its next poll."""

    def __init__(self, conn: NatsConn, bucket: str, replicas: int) -> None:
        self.conn, self.bucket, self.replicas = conn, bucket, replicas
        self._kv: KeyValue | None = None

    def kv(self) -> KeyValue:
        if self._kv is None:
            if not self.conn.connected.is_set():
                raise ClusterError("cluster mode is not connected yet")
            self._kv = self.conn.run(ensure_kv(self.conn.js, self.bucket, self.replicas,
                                               None), f"KV bucket {self.bucket}")
        return self._kv


class KVRuleStore:
    """Rule groups in the cluster's KV (module docstring); the rules API's store.
    `state`: the groups' for-state documents; deleting a group deletes its document
    too, so it does not outlive the group when its holder is dead (a live holder that
    finds its group gone drops it and removes the document as well)."""

    writable = True

    def __init__(self, conn: NatsConn, bucket: str, replicas: int,
                 state: StateBlobs | None = None) -> None:
        self._b = _Bucket(conn, bucket, replicas)
        self.conn, self.bucket, self.state = conn, bucket, state

    def _read(self, pattern: str) -> dict[str, bytes]:
        return self.conn.run(kv_snapshot(self._b.kv(), pattern), "rule groups",
                             timeout=4 * self.conn.cfg.timeout)

    def _groups(self, pattern: str, errors: dict[str, str] | None
                ) -> dict[str, dict[str, list[RuleGroup]]]:
        out: dict[str, dict[str, list[RuleGroup]]] = {}
        for key, value in sorted(self._read(pattern).items()):
            try:
                tenant, ns, _name = group_of_kv_key(key)
                group = parse_group(value)
            except (ValueError, RuleFormatError) as exc:
                where = f"{self.bucket}/{key}"
                if errors is not None:
                    errors[where] = f"error parsing {where}: {exc}"
                else:
                    log.warning("rule group %s not read: %s", where, exc)
                continue
            out.setdefault(tenant, {}).setdefault(ns, []).append(group)
        for namespaces in out.values():
            for groups in namespaces.values():
                groups.sort(key=lambda g: g.name)
        return out

    def load_all(self) -> LoadedRules:
        loaded = LoadedRules()
        loaded.groups = self._groups(">", loaded.errors)
        return loaded

    def list_groups(self, tenant: str) -> dict[str, list[RuleGroup]]:
        return dict(sorted(self._groups(f"{kv_token(tenant)}.>", None).get(tenant, {}).items()))

    def get_namespace(self, tenant: str, namespace: str) -> list[RuleGroup]:
        got = self._groups(f"{kv_token(tenant)}.{kv_token(namespace)}.*", None)
        return got.get(tenant, {}).get(namespace, [])

    def get_group(self, tenant: str, namespace: str, name: str) -> RuleGroup | None:
        key = group_kv_key(tenant, namespace, name)
        value = kv_value(self.conn, self._b.kv(), key, "rule group")
        if value is None:
            return None
        try:
            return parse_group(value)
        except RuleFormatError as exc:
            log.warning("rule group %s/%s not read: %s", self.bucket, key, exc)
            return None

    def set_group(self, tenant: str, namespace: str, group: RuleGroup) -> None:
        key = group_kv_key(tenant, namespace, group.name)
        self.conn.run(self._b.kv().put(key, dump_group(group).encode()), "rule group")

    def delete_group(self, tenant: str, namespace: str, name: str) -> None:
        self.conn.run(self._b.kv().delete(group_kv_key(tenant, namespace, name)),
                      "rule group")
        if self.state is not None:
            self.state.remove(state_name(tenant, namespace, name))

    def delete_namespace(self, tenant: str, namespace: str) -> None:
        for g in self.get_namespace(tenant, namespace):
            self.delete_group(tenant, namespace, g.name)


class KVBlobs:
    """The ruler's for-state documents in a KV bucket (`StateBlobs`)."""

    def __init__(self, conn: NatsConn, bucket: str, replicas: int) -> None:
        self._b = _Bucket(conn, bucket, replicas)
        self.conn, self.bucket = conn, bucket

    def read(self, name: str) -> bytes | None:
        return kv_value(self.conn, self._b.kv(), name, "for-state")

    def write(self, name: str, data: bytes) -> None:
        self.conn.run(self._b.kv().put(name, data), "for-state")

    def remove(self, name: str) -> None:
        self.conn.run(self._b.kv().delete(name), "for-state")

    def where(self, name: str) -> str:
        return f"{self.bucket}/{name}"


def rendezvous(key: GroupKey, members: list[str]) -> str:
    """The member with the highest hash of (member, group): every member computes the
    same choice from the same list, and a member joining or leaving moves only the
    groups it wins or held."""
    ident = "\0".join(key)
    return max(members, key=lambda m: hashlib.sha256(f"{m}\0{ident}".encode()).digest())


class RuleGroupShard:
    """The `GroupShard` of one member (module docstring). `evaluates`: this member has
    the ruler role; one without it claims nothing (its rules API still works)."""

    def __init__(self, leases: Leases, members: MemberRegistry, me: str, evaluates: bool,
                 tick_s: float) -> None:
        self.leases, self.members, self.me = leases, members, me
        self.evaluates = evaluates
        self.tick_s = tick_s

    def rulers(self) -> list[str]:
        ids = [m.id for m in self.members.members() if m.has("ruler")]
        if self.evaluates and self.me not in ids:
            ids.append(self.me)  # just started: not in the registry's cached list yet
        return ids

    def claim(self, keys: list[GroupKey]) -> set[GroupKey]:
        wanted: set[GroupKey] = set()
        if self.evaluates:
            live = self.rulers()
            wanted = {k for k in keys if rendezvous(k, live) == self.me}
        held = self.leases.held()
        for lease in sorted(held):
            key = group_of_lease_key(lease)
            if key is not None and key not in wanted:
                self.leases.release(lease)  # another member's now (or the group is gone)
                log.info("cluster: rule group %s/%s of tenant %s handed over", key[1],
                         key[2], key[0])
        for key in sorted(wanted):
            lease = rule_lease_key(key)
            if lease in held:
                continue
            try:
                if self.leases.acquire(lease):
                    log.info("cluster: this member evaluates rule group %s/%s of tenant %s",
                             key[1], key[2], key[0])
            except ClusterError as exc:
                log.warning("cluster: rule group lease %s not taken now: %s", lease, exc)
        return {k for k in wanted if self.holds(k)}

    def holds(self, key: GroupKey) -> bool:
        return rule_lease_key(key) in self.leases.held()
