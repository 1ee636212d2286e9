"""Operating a cluster, with real processes (nats-server and two `sluiceway server
--cluster` processes on loopback ports): a long query fans out over the queriers and
answers the same on both nodes; a tail on one node sees lines pushed through the other;
a heartbeat taken by one node is on the other's pipeline page; `/cluster/status` and the
metrics describe the cluster; each distributor enforces its share of a tenant's rate."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.sync.client import connect

from tests.natsprocs import ProcCluster

pytestmark = pytest.mark.timeout(240)
S = 10**9
H = 3600 * S
RATE_MB = 1.0  # a tenant's ingestion_rate_mb: 2 distributors enforce half each


def _poll(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not in {timeout:g}s: {what}"
        time.sleep(0.3)


class Cluster(ProcCluster):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, [("a", None), ("b", None)], "ops-", {"limits": {
            "ingestion_rate_mb": RATE_MB, "ingestion_burst_size_mb": 0.5}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ops"))
    yield c
    c.stop()


def push(url: str, app: str, entries: list[tuple[int, str]], tenant: str = "fake") -> int:
    body = {"streams": [{"stream": {"app": app, "job": "ops"},
                         "values": [[str(t), line] for t, line in entries]}]}
    return httpx.post(f"{url}/loki/api/v1/push", json=body, timeout=30,
                      headers={"X-Scope-OrgID": tenant}).status_code


def query(url: str, q: str, start: int, end: int, **kw: Any) -> Any:
    r = httpx.get(f"{url}/loki/api/v1/query_range", timeout=60,
                  params={"query": q, "start": str(start), "end": str(end), **kw})
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_long_query_fans_out_and_answers_the_same_on_every_node(cluster: Cluster) -> None:
    a, b = cluster.nodes
    now = time.time_ns()
    t0 = now - 5 * H
    sent = 0
    for k in range(5):  # five hours, through both nodes
        entries = [(t0 + k * H + i * 60 * S + k, f"level={'error' if i % 4 == 0 else 'info'} "
                    f"hour={k} i={i}") for i in range(50)]
        assert push((a, b)[k % 2].url, f"app{k % 3}", entries) == 204
        sent += len(entries)
    start, end = t0 - 60 * S, now
    _poll(lambda: all(len(sum((s["values"] for s in query(n.url, '{job="ops"}', start, end,
                                                          limit="1000")), [])) == sent
                      for n in (a, b)), 60, "every line on both nodes")
    before = [metric(n.url, "sluiceway_cluster_query_splits_total", 'where="remote"')
              for n in (a, b)]
    for q, kw in (('{job="ops"} |= "error"', {"limit": "1000"}),
                  ('{job="ops"}', {"limit": "30", "direction": "forward"}),
                  ('sum by (app) (count_over_time({job="ops"}[10m]))', {"step": "300"}),
                  ('rate({job="ops"} |= "error" [30m])', {"step": "600"})):
        got_a, got_b = query(a.url, q, start, end, **kw), query(b.url, q, start, end, **kw)
        assert got_a == got_b, q
        assert got_a, q
    after = [metric(n.url, "sluiceway_cluster_query_splits_total", 'where="remote"')
             for n in (a, b)]
    assert all(x > y for x, y in zip(after, before, strict=True))  # both fanned out
    assert sum(metric(n.url, "sluiceway_cluster_query_splits_total", 'where="served"')
               for n in (a, b)) >= sum(after) - sum(before)


def test_a_tail_on_one_node_sees_lines_pushed_through_the_other(cluster: Cluster) -> None:
    a, b = cluster.nodes
    url = b.url.replace("http://", "ws://") + "/loki/api/v1/tail?" + urlencode(
        {"query": '{app="tailed"}'})
    with connect(url, open_timeout=30) as ws:
        got: list[str] = []

        def arrived() -> bool:
            assert push(a.url, "tailed", [(time.time_ns(), f"through a {len(got)}")]) == 204
            try:
                frame = json.loads(ws.recv(timeout=2))
            except TimeoutError:
                return False
            got.extend(v[1] for s in frame["streams"] for v in s["values"])
            return bool(got)

        _poll(arrived, 60, "a line pushed through a on b's tail")
        assert got[0].startswith("through a")
    assert metric(b.url, "sluiceway_cluster_tail_relayed_total") >= 1


def test_a_heartbeat_taken_by_one_node_is_on_every_pipeline_page(cluster: Cluster) -> None:
    a, b = cluster.nodes
    hb = {"id": "agent-ops", "kind": "agent", "name": "agent-ops", "host": "h", "pid": 1,
          "token": "tok", "ts": 0.0, "interval_s": 5.0, "lines": {"lost": 2},
          "queue": {"depth": 0, "capacity": 10, "when_full": "block"}}
    r = httpx.post(f"{a.url}/sluiceway/api/v1/heartbeat", json=hb, timeout=30)
    assert r.status_code == 204, r.text

    def card() -> dict[str, Any] | None:
        cards = httpx.get(f"{b.url}/sluiceway/api/v1/pipeline", timeout=30).json()["data"]
        return next((c for c in cards if c["id"] == "agent-ops"), None)

    _poll(lambda: card() is not None, 30, "the card on b")
    got = card()
    assert got is not None and got["lines"]["lost"] == 2 and not got["stale"]


def test_cluster_status_and_metrics(cluster: Cluster) -> None:
    a, b = cluster.nodes

    def status(url: str) -> dict[str, Any]:
        r = httpx.get(f"{url}/cluster/status", timeout=30)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()["data"]
        return doc

    _poll(lambda: len(status(a.url)["partitions"] or []) == 6
          and all(p["owner"] for p in status(a.url)["partitions"]), 60, "owned partitions")
    doc = status(a.url)
    assert doc["mode"] == "cluster" and doc["errors"] == {}
    ids = {m["id"] for m in doc["members"]}
    assert len(ids) == 2 and doc["me"] in ids
    assert {m["address"] for m in doc["members"]} == {f"127.0.0.1:{n.port}" for n in (a, b)}
    assert {p["owner"] for p in doc["partitions"]} == ids  # both ingesters own some
    # Every owner says its partitions' lag: lines of its own, not yet flushed, are in heads
    # (this test's, so it does not lean on what the tests before it left unflushed).
    t = time.time_ns()
    for i in range(12):
        assert push(a.url, f"lag{i}", [(t + i, f"lag line {i}")]) == 204
    _poll(lambda: all(p["lag"] is not None for p in status(a.url)["partitions"]), 60,
          "every partition's lag")
    _poll(lambda: sum(p["lag"] for p in status(a.url)["partitions"]) > 0, 60,
          "lag of the unflushed lines")
    doc = status(a.url)
    assert all(p["consumed_seq"] >= p["flushed_seq"] for p in doc["partitions"])
    assert [s["name"] for s in doc["streams"]] == ["ops-ingest-0", "ops-ingest-1",
                                                    "ops-ingest-2"]
    assert all(s["healthy"] for s in doc["streams"])
    assert doc["object_store"]["bytes"] >= 0
    assert doc["singletons"]["compactor"] in ids
    # A flush puts every line in chunks: the lag goes to 0 everywhere.
    for n in (a, b):
        assert httpx.post(f"{n.url}/flush", timeout=60).status_code == 204
    _poll(lambda: all(p["lag"] == 0 for p in status(b.url)["partitions"]), 90, "lag 0")
    _poll(lambda: status(b.url)["object_store"]["bytes"] > 0, 60, "chunks in the store")
    text = httpx.get(f"{b.url}/metrics", timeout=30).text
    assert re.search(r'sluiceway_cluster_members\{role="all"\} 2\.0', text)
    assert "sluiceway_cluster_partition_lag_messages{" in text
    # Every partition held by one of them (polled: a lease moving between the two at a
    # rebalance is held by neither for a moment).
    _poll(lambda: sum(metric(n.url, "sluiceway_cluster_leases_held", 'kind="partition"')
                      for n in (a, b)) == 6, 60, "6 partition leases held")
    assert sum(metric(n.url, "sluiceway_cluster_leases_held", 'kind="compactor"')
               for n in (a, b)) == 1
    assert httpx.get(f"{a.url}/cluster/status").status_code == 200


def test_each_distributor_enforces_its_share_of_the_tenants_rate(cluster: Cluster) -> None:
    """Loki's global strategy: 1 MB/s over two distributors is 512 KiB/s each."""
    a, _ = cluster.nodes
    line = "x" * 1000
    share = int(RATE_MB * (1 << 20) / 2)

    def refused() -> str:
        r = httpx.post(f"{a.url}/loki/api/v1/push", timeout=30, headers={
            "X-Scope-OrgID": "rated"}, json={"streams": [{"stream": {"app": "rate"}, "values": [
                [str(time.time_ns() + i), line] for i in range(600)]}]})
        return r.text if r.status_code == 429 else ""

    _poll(lambda: f"(limit: {share} bytes/sec)" in refused(), 60, "the share in the 429")
