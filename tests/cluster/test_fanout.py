"""Query fan-out over a real `nats-server`: a query's time splits go to a queue group of
queriers (in-process engines over the same data, as nodes over one object store) and the
merged answer is the local engine's, for log and metric queries; an error in one split is
the query's error, the deadline covers the whole query, and with no queriers the splits
run where the query was taken."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sluiceway.cluster import FanoutCounts, NatsSplitRunner, SplitQuerier, split_subject
from sluiceway.logql import (
    Deadline,
    ExecOptions,
    LogSource,
    MemorySource,
    QueryError,
    QueryParams,
    QueryTimeout,
    evaluate,
    evaluate_splits,
)
from sluiceway.model import StreamBatch
from tests.objservers import NatsJetStream

nats = pytest.importorskip("nats")

S = 10**9
M = 60 * S
H = 3600 * S
T0 = 1_700_000_000 // 3600 * H


def data() -> MemorySource:
    src = MemorySource(block_size=16)
    for app, off, every in (("api", 0, 7), ("web", 1, 11), ("db", 2, 13)):
        ts = list(range(T0 + off * S, T0 + 6 * H, every * S * 10))
        lines = [f'level={"error" if i % 5 == 0 else "info"} n={i}' for i in range(len(ts))]
        src.push("t", [StreamBatch({"app": app, "env": "prod"}, ts, lines)])
    return src


class Node:
    """One process's NATS connection on its own event loop thread."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc: Any = self.run(nats.connect(url))
        self.querier: SplitQuerier | None = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def serve(self, subject: str, source: LogSource) -> FanoutCounts:
        counts = FanoutCounts()
        self.querier = SplitQuerier(self.nc, self.loop, subject, lambda p, f: source,
                                    lambda: ExecOptions(), workers=2, counts=counts)
        self.run(self.querier.start())
        self.run(self.nc.flush())
        return counts

    def close(self) -> None:
        if self.querier is not None:
            self.run(self.querier.stop())
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def nodes(nats_js: NatsJetStream, request: pytest.FixtureRequest) -> Iterator[list[Node]]:
    made = [Node(nats_js.url) for _ in range(3)]
    yield made
    for n in made:
        n.close()


def runner(node: Node, subject: str, local: LogSource,
           counts: FanoutCounts | None = None) -> NatsSplitRunner:
    return NatsSplitRunner(node.nc, node.loop, subject, lambda p: local, None, in_flight=4,
                           counts=counts)


def params(**kw: Any) -> QueryParams:
    return QueryParams(["t"], T0 + 7 * M, T0 + 5 * H + 31 * M,
                       options=ExecOptions(split_ns=H), **kw)


QUERIES = [('{env="prod"} |= "error"', {"limit": 1000}),
           ('{env="prod"}', {"limit": 50, "direction": "forward"}),
           ('{app=~"api|db"} | logfmt | n > 40', {"limit": 5000}),
           ('sum by (app) (count_over_time({env="prod"}[5m]))', {"step_ns": 5 * M}),
           ('rate({env="prod"} |= "error"[10m])', {}),
           ('max_over_time({env="prod"} | logfmt | unwrap n [15m]) by (app)', {"step_ns": M}),
           ('topk(1, sum by (app) (bytes_over_time({env="prod"}[30m])))', {})]


def test_fanned_out_answers_equal_local_answers(nodes: list[Node], request: Any) -> None:
    subject = split_subject(f"fan-{request.node.name[-8:]}")
    src = data()
    served = [n.serve(subject, src) for n in nodes]
    mine = FanoutCounts()
    for query, kw in QUERIES:
        want = evaluate(src, query, params(**kw))
        got, warnings = evaluate_splits(query, params(**kw), runner(nodes[0], subject, src,
                                                                      mine))
        assert got.to_loki_json()["result"] == want.to_loki_json()["result"], query
        assert warnings == []
    assert mine.local == 0 and mine.sent >= len(QUERIES) * 5
    assert sum(c.served for c in served) >= mine.sent  # a filled limit drops the rest
    assert sum(1 for c in served if c.served) >= 2  # the queue group spread the splits


def test_an_error_in_one_split_fails_the_query_with_its_message(nodes: list[Node],
                                                                request: Any) -> None:
    subject = split_subject(f"err-{request.node.name[-8:]}")
    src = data()
    src.push("t", [StreamBatch({"app": "api", "env": "prod"}, [T0 + 4 * H + 5 * S],
                               ["level=info n=not-a-number"])])
    for n in nodes:
        n.serve(subject, src)
    query = 'sum_over_time({app="api"} | logfmt | unwrap n [5m])'
    with pytest.raises(QueryError) as local:
        evaluate(src, query, params())
    with pytest.raises(QueryError) as fanned:
        evaluate_splits(query, params(), runner(nodes[0], subject, src))
    assert str(fanned.value) == str(local.value)
    assert "pipeline error" in str(local.value)


class Stalled(MemorySource):
    """A source whose reads wait until the test lets them go."""

    def __init__(self, inner: MemorySource, gate: threading.Event) -> None:
        self.__dict__.update(inner.__dict__)
        self.gate = gate

    def blocks(self, *a: Any, **kw: Any) -> Any:
        self.gate.wait(30)
        return super().blocks(*a, **kw)


def test_the_deadline_covers_the_whole_query(nodes: list[Node], request: Any) -> None:
    subject = split_subject(f"dl-{request.node.name[-8:]}")
    gate = threading.Event()
    slow = Stalled(data(), gate)
    counts = [n.serve(subject, slow) for n in nodes[1:]]
    p = params(limit=5000, deadline=Deadline(1.0))
    try:
        with pytest.raises(QueryTimeout):
            evaluate_splits('{env="prod"}', p, runner(nodes[0], subject, data()))
    finally:
        gate.set()
    assert all(c.served + c.failed <= 6 for c in counts)


def test_with_no_queriers_the_splits_run_where_the_query_was_taken(
        nodes: list[Node], request: Any) -> None:
    subject = split_subject(f"none-{request.node.name[-8:]}")
    src = data()
    counts = FanoutCounts()
    for query, kw in QUERIES[:4]:
        want = evaluate(src, query, params(**kw))
        got, _ = evaluate_splits(query, params(**kw), runner(nodes[0], subject, src, counts))
        assert got.to_loki_json()["result"] == want.to_loki_json()["result"]
    assert counts.sent == 0 and counts.local >= 3 * 5


def test_a_split_too_large_for_one_nats_message_runs_here(nodes: list[Node],
                                                           request: Any) -> None:
    subject = split_subject(f"big-{request.node.name[-8:]}")
    src = MemorySource()
    line = "x" * 4000
    src.push("t", [StreamBatch({"app": "big"}, [T0 + k * 3 * S for k in range(2 * 1200)],
                               [line] * 2400)])
    served = nodes[1].serve(subject, src)
    counts = FanoutCounts()
    p = QueryParams(["t"], T0, T0 + 2 * H, limit=5000, options=ExecOptions(split_ns=H))
    want = evaluate(src, '{app="big"}', copy.copy(p))
    got, _ = evaluate_splits('{app="big"}', p, runner(nodes[0], subject, src, counts))
    assert got.to_loki_json()["result"] == want.to_loki_json()["result"]
    assert served.served >= 1 and counts.local >= 1  # answered, too big to send back


def test_a_query_taken_while_nats_is_away_runs_its_splits_here(tmp_path: Any) -> None:
    """The fan-out of a query is sized from the members the status thread last read and
    never waits for NATS: with NATS gone (the member registry cannot answer) the query
    runs its splits where it was taken, and answers as the local engine does."""
    from sluiceway.cluster import ClusterConfig, ClusterOps, Member, MemberRegistry, NatsConn
    from tests.natsprocs import nats_or_skip, single_node

    nats_node = single_node(nats_or_skip(), tmp_path / "nats")
    conn = NatsConn(ClusterConfig(urls=(nats_node.url,), timeout=1.0))
    try:
        assert conn.wait_connected(30)
        me = Member("n1", "all", "127.0.0.1:1", "0", 0.0)
        registry = MemberRegistry(conn, "fo-members", me, 60.0, 1)
        registry.beat()
        ops = ClusterOps.__new__(ClusterOps)  # only the query side: no status thread
        ops.conn, ops.members, ops.counts = conn, registry, FanoutCounts()
        ops.subject, ops.live_members = split_subject("fo-"), registry.members(fresh=True)
        nats_node.stop()
        registry._cache = (0.0, [])  # the registry's cache has expired: it would ask NATS
        src = data()
        query, kw = QUERIES[3]
        want = evaluate(src, query, params(**kw))
        got, _ = evaluate_splits(query, params(**kw),
                                 ops.runner(lambda p: src, None, parallelism=2))
        assert got.to_loki_json()["result"] == want.to_loki_json()["result"]
        assert ops.counts.sent == 0 and ops.counts.local >= 5
    finally:
        conn.close()
        nats_node.stop()
