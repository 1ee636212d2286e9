"""The ingester against a real nats-server, in one process (two stores standing for
two nodes, sharing one object store directory): partitions consumed into the heads,
the sequence fully in chunks recorded in KV, the per-partition cap forcing a flush, the
stream purged behind it, and a new owner replaying exactly what is not in chunks."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np

from sluiceway.cluster import (
    ClusterConfig,
    ClusterError,
    ClusterNode,
    Ingester,
    Leases,
    Member,
    MemberRegistry,
    NatsConn,
    Publisher,
    split_record,
)
from sluiceway.model import EntryBlock, Matcher, PushRecord
from sluiceway.store import LocalDir, Store, StoreConfig
from tests.natsprocs import NatsNode

S = 10**9
T0 = 1_700_000_000 * S


def _poll(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not in {timeout:g}s: {what}"
        time.sleep(0.1)


def _record(i: int, apps: int = 4) -> PushRecord:
    blocks = [EntryBlock.from_lines({"app": f"a{k}"}, np.array([T0 + i * S + k], dtype=np.int64),
                                    [f"line {i} of a{k} ".encode() * 20])
              for k in range(apps)]
    return PushRecord("t", blocks)


class _Node:
    def __init__(self, url: str, cfg: ClusterConfig, tmp: Path, name: str,
                 objects: LocalDir) -> None:
        self.conn = NatsConn(cfg)
        assert self.conn.wait_connected(30)
        self.store = Store(StoreConfig(data_dir=tmp / name, wal_sync="interval",
                                       compaction_enabled=False, index_sync_period=0,
                                       flush_on_shutdown=False), objects=objects)
        self.leases = Leases(self.conn, cfg.bucket("leases"), name, cfg.lease_ttl, 1)
        self.members = MemberRegistry(self.conn, cfg.bucket("members"),
                                      Member(name, "all", name, "t", 0.0), 1.0, 1)
        self.members.start()
        self.ingester = Ingester(self.conn, cfg, self.store, self.leases, self.members, name)

    def lines(self) -> set[bytes]:
        """Every line this node's store serves (chunks it knows, and its heads)."""
        self.store.sync_index()
        out: set[bytes] = set()
        for ref in self.store.series(["t"], [Matcher("app", "=~", ".+")], 0, 2**62):
            for b in self.store.blocks(ref, 0, 2**62, "forward"):
                out.update(b.line(i) for i in range(len(b)))
        return out

    def close(self) -> None:
        self.ingester.close(flush=False)
        self.members.stop()
        self.store.close()
        self.conn.close()


def test_recorded_sequence_cap_purge_and_replay_by_a_new_owner(nats: NatsNode,
                                                               tmp_path: Path) -> None:
    cfg = ClusterConfig(urls=(nats.url,), partitions=2, partitions_per_stream=2, replicas=1,
                        lease_ttl=2.0, flush_cap=20_000, purge_delay=0.0)
    objects = LocalDir(tmp_path / "objects")
    pub_conn = NatsConn(cfg)
    assert pub_conn.wait_connected(30)
    publisher = Publisher(pub_conn, cfg)
    publisher.ensure_streams()
    a = _Node(nats.url, cfg, tmp_path, "a", objects)
    b: _Node | None = None
    try:
        a.ingester.balance(set())
        assert a.ingester.owned() == [0, 1]
        sent: set[bytes] = set()
        for i in range(60):
            rec = _record(i)
            assert asyncio.run(publisher.publish(rec)) == len(split_record(rec, 2, 1 << 20))
            sent |= {blk.line(0) for blk in rec.blocks}
        _poll(lambda: a.ingester.records >= 60 and a.lines() == sent, 30,
              "every published line in a's heads")
        # ~60 KiB per partition is past the 20 kB cap: commit forces a flush, then
        # records the sequence that is in chunks, and purges the stream behind it.
        for _ in range(3):
            a.ingester.commit()
        assert a.store.chunks_flushed > 0
        kv = a.conn.run(a.conn.js.key_value(cfg.bucket("offsets")), "kv")
        recorded = {p: json.loads(a.conn.run(kv.get(f"p-{p}"), "get").value)["seq"]
                    for p in (0, 1)}
        assert all(seq > 0 for seq in recorded.values())
        info = a.conn.run(a.conn.js.stream_info(cfg.stream_of(0)), "info")
        assert info.state.messages < 2 * 60  # purged up to what is in chunks

        # More lines, not flushed: a dies without a flush (its leases let go).
        late: set[bytes] = set()
        for i in range(60, 70):
            rec = _record(i)
            asyncio.run(publisher.publish(rec))
            late |= {blk.line(0) for blk in rec.blocks}
        _poll(lambda: a.ingester.records >= 70, 30, "a applied the late records")
        a.ingester.commit()
        in_chunks = set()
        for ref in a.store.series(["t"], [Matcher("app", "=~", ".+")], 0, 2**62):
            ts = a.store.tenants["t"]
            s = ts.streams[ref.fp]
            for c in s.chunks:
                block = ts.load_or_take_out(s, c)
                assert block is not None
                in_chunks.update(block.line(i) for i in range(len(block)))
        a.close()

        # b takes both partitions and replays from the recorded sequences: with a's
        # chunks (through the shared objects) it serves every line; its heads hold at
        # least every line that is not in a chunk.
        b = _Node(nats.url, cfg, tmp_path, "b", objects)
        b.ingester.balance(set())
        assert b.ingester.owned() == [0, 1]
        want = sent | late
        _poll(lambda: b is not None and b.lines() == want, 30, "b serves every line")
        heads = {blk.line(i) for _, blk in b.store.memory_blocks(
            ["t"], [Matcher("app", "=~", ".+")], 0, 2**62) for i in range(len(blk))}
        assert want - in_chunks <= heads
        assert len(heads) < len(want)  # only the tail after the recorded sequence
    finally:
        if b is not None:
            b.close()
        pub_conn.close()


def test_a_partition_whose_lost_lease_was_not_reported_stops(nats: NatsNode,
                                                             tmp_path: Path) -> None:
    """The node's keeper renews, then balances with the keys lost; when its pass failed
    in between (a NATS timeout taking the compactor lease), the loss was never handed
    over, and renewal had already forgotten the key. The ingester must still stop a
    partition whose lease it no longer holds, not consume it beside its new owner."""
    cfg = ClusterConfig(urls=(nats.url,), partitions=2, partitions_per_stream=2, replicas=1,
                        lease_ttl=60.0)
    pub_conn = NatsConn(cfg)
    assert pub_conn.wait_connected(30)
    Publisher(pub_conn, cfg).ensure_streams()
    a = _Node(nats.url, cfg, tmp_path, "a", LocalDir(tmp_path / "objects"))
    try:
        a.ingester.balance(set())
        assert a.ingester.owned() == [0, 1]
        # Another member takes partition 1 (its key purged, as an expiry would).
        other = Leases(pub_conn, cfg.bucket("leases"), "b", cfg.lease_ttl, 1)
        pub_conn.run(other.kv.purge("partition-1"), "purge")
        assert other.acquire("partition-1")
        assert a.leases.renew() == {"partition-1"}  # ... and this report is dropped
        a.ingester.balance(set())
        assert a.ingester.owned() == [0]
        assert other.holder_of("partition-1") == "b"
    finally:
        a.close()
        pub_conn.close()


class _CompactorTimesOut(Leases):
    """Leases whose compactor acquire fails as a NATS timeout would (the fault point)."""

    tries = 0
    failing = True

    def acquire(self, key: str) -> bool:
        if key == "compactor":
            self.tries += 1
            if self.failing:
                raise ClusterError("lease compactor: no answer from NATS in 5s (fault point)")
        return super().acquire(key)


class _BalanceTimesOut(Ingester):
    def balance(self, lost: set[str]) -> None:
        raise ClusterError("members: no answer from NATS in 5s (fault point)")


def test_a_failing_compactor_acquire_does_not_hold_up_a_lost_partition(
        nats: NatsNode, tmp_path: Path) -> None:
    """The node's lease keeper: one tick renews, and the partition whose lease was lost
    stops in that tick even though taking the compactor lease raises in it (before, the
    compactor came first and its failure skipped the rest of the tick); and a failing
    balance does not skip the compactor."""
    cfg = ClusterConfig(urls=(nats.url,), partitions=1, partitions_per_stream=1, replicas=1,
                        lease_ttl=60.0)
    pub_conn = NatsConn(cfg)
    assert pub_conn.wait_connected(30)
    Publisher(pub_conn, cfg).ensure_streams()
    a = _Node(nats.url, cfg, tmp_path, "a", LocalDir(tmp_path / "objects"))
    node = ClusterNode(cfg, "127.0.0.1:1", "t", make_store=lambda _objects: a.store)
    try:
        a.leases = _CompactorTimesOut(a.conn, cfg.bucket("leases"), "a", cfg.lease_ttl, 1)
        a.ingester = Ingester(a.conn, cfg, a.store, a.leases, a.members, "a")
        node.leases, node.ingester = a.leases, a.ingester
        a.ingester.balance(set())
        assert a.ingester.owned() == [0]
        # Another member takes partition 0 (its key purged, as an expiry would).
        other = Leases(pub_conn, cfg.bucket("leases"), "b", cfg.lease_ttl, 1)
        pub_conn.run(other.kv.purge("partition-0"), "purge")
        assert other.acquire("partition-0")
        node.keep_leases()  # one tick of the keeper
        assert a.leases.tries == 1  # the compactor step ran, and failed
        assert a.ingester.owned() == []  # ... and the lost partition stopped all the same
        assert other.holder_of("partition-0") == "b"
        # The other way round: a balance that raises does not skip the compactor.
        a.leases.failing = False
        node.ingester = _BalanceTimesOut(a.conn, cfg, a.store, a.leases, a.members, "a")
        node.keep_leases()
        assert a.leases.tries == 2 and "compactor" in a.leases.held()
    finally:
        node.conn.close()
        a.close()
        pub_conn.close()
