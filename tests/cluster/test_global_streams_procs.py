"""`max_global_streams_per_user` holds across the cluster, decided before the 204: real
processes on a real nats-server, an ingester (`all`) and a distributor-only process
whose own store holds no stream at all. Streams created through the first count on the
second (the ingesters' active streams, shared through KV): a new stream past the limit
is Loki's 429 there, the tenant's existing streams are still taken, and the refused
line is never stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.monitoring import wait_until
from tests.natsprocs import ProcCluster

pytestmark = pytest.mark.timeout(240)
LIMIT = 2


class Cluster(ProcCluster):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, [("a", "all"), ("b", "distributor")], "gs-",
                         {"limits": {"max_global_streams_per_user": LIMIT}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("gstreams"))
    yield c
    c.stop()


def push(url: str, n: str, line: str) -> httpx.Response:
    body = {"streams": [{"stream": {"app": "lim", "n": n},
                         "values": [[str(time.time_ns()), line]]}]}
    return httpx.post(f"{url}/loki/api/v1/push", content=orjson.dumps(body), timeout=30,
                      headers={"Content-Type": "application/json"})


def active_streams(url: str) -> int:
    r = httpx.get(f"{url}/cluster/status", timeout=30)
    if r.status_code != 200:
        return 0
    return int((r.json()["data"].get("node") or {}).get("active_streams", {}).get("fake", 0))


def lines(url: str) -> list[str]:
    r = httpx.get(f"{url}/loki/api/v1/query_range", timeout=30, params={
        "query": '{app="lim"}', "limit": "100", "start": str(time.time_ns() - 600 * 10**9)})
    assert r.status_code == 200, r.text
    return sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"])


def test_streams_made_through_one_node_count_on_another(cluster: Cluster) -> None:
    a, b = cluster.nodes
    for n in ("1", "2"):
        r = push(a.url, n, f"first {n}")
        assert r.status_code == 204, r.text
    wait_until(lambda: lines(b.url) == ["first 1", "first 2"], "the first lines", 60,
               cluster.logs)
    # The distributor-only node learns the tenant's streams from the ingester's entries
    # (its status says so; without that sharing it would never: the push below says 204).
    deadline = time.monotonic() + 60
    while active_streams(b.url) < LIMIT and time.monotonic() < deadline:
        time.sleep(0.3)
    r = push(b.url, "3", "one too many")
    assert r.status_code == 429, r.text
    assert ('maximum active stream limit exceeded when trying to create stream '
            '{app="lim", n="3"}') in r.text
    assert "user: 'fake'" in r.text
    r = push(b.url, "1", "again 1")  # an existing stream is still taken
    assert r.status_code == 204, r.text
    r = push(a.url, "3", "one too many through a")  # and the limit holds on a too
    assert r.status_code == 429, r.text
    want = ["again 1", "first 1", "first 2"]
    wait_until(lambda: lines(b.url) == want, "the admitted lines", 60, cluster.logs)
    assert lines(a.url) == want
