"""Out-of-order window, same-timestamp lines, group commit, interval sync, ops endpoints."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson

from tests.inproc import ThreadServer
from tests.procs import ServerProcess

JSON = {"Content-Type": "application/json"}


def _push(srv: ServerProcess, values: list[list[str]], job: str = "ooo") -> httpx.Response:
    body = orjson.dumps({"streams": [{"stream": {"job": job}, "values": values}]})
    return httpx.post(f"{srv.url}/loki/api/v1/push", content=body, headers=JSON)


def _values(srv: ServerProcess, job: str = "ooo") -> list[list[str]]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
        "query": f'{{job="{job}"}}', "limit": "1000", "direction": "forward",
        "start": str(time.time_ns() - 3 * 3600 * 10**9)})
    return [v for s in r.json()["data"]["result"] for v in s["values"]]


def test_out_of_order_within_window_is_accepted_and_sorted(server: ServerProcess) -> None:
    now = time.time_ns()
    assert _push(server, [[str(now), "newest"]]).status_code == 204
    assert _push(server, [[str(now - 30 * 60 * 10**9), "half an hour late"],
                          [str(now - 10**9), "one second late"]]).status_code == 204
    r = _push(server, [[str(now - 2 * 3600 * 10**9), "two hours late"]])
    assert r.status_code == 400 and "too far behind" in r.text
    assert [v[1] for v in _values(server)] == ["half an hour late", "one second late", "newest"]


def test_same_timestamp_different_lines_all_kept_exact_duplicates_once(
        server: ServerProcess) -> None:
    t = str(time.time_ns())
    assert _push(server, [[t, "a"], [t, "b"], [t, "a"]], job="dup").status_code == 204
    assert _push(server, [[t, "b"], [t, "c"]], job="dup").status_code == 204
    assert sorted(v[1] for v in _values(server, "dup")) == ["a", "b", "c"]


def test_concurrent_pushes_share_fsyncs(server: ServerProcess) -> None:
    now = time.time_ns()

    def push(i: int) -> None:
        with httpx.Client() as c:
            for b in range(20):
                body = orjson.dumps({"streams": [{"stream": {"job": "gc", "w": str(i)}, "values": [
                    [str(now - 10**9 + b * 1000 + k), f"w{i} b{b} k{k}"] for k in range(20)]}]})
                assert c.post(f"{server.url}/loki/api/v1/push", content=body,
                              headers=JSON).status_code == 204

    ts = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    metrics = httpx.get(f"{server.url}/metrics").text
    records = _metric(metrics, "sluiceway_wal_records_logged_total")
    syncs = _metric(metrics, "sluiceway_wal_fsyncs_total")
    assert records >= 160
    assert syncs < records, "concurrent requests should share fsyncs (group commit)"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_interval_sync_mode_acks_and_survives_clean_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  wal_sync: interval\n  wal_sync_interval: 50ms\n")
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    now = time.time_ns()
    assert _push(srv, [[str(now - i), f"l{i}"] for i in range(100)]).status_code == 204
    time.sleep(0.2)  # past one sync interval the data is on disk
    srv.kill()
    srv.start()
    assert len(_values(srv)) == 100
    srv.stop()


def test_ops_endpoints(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/ready").status_code == 200
    info = httpx.get(f"{server.url}/loki/api/v1/status/buildinfo").json()
    assert info["version"]
    m = httpx.get(f"{server.url}/metrics")
    assert m.status_code == 200 and "sluiceway_wal_fsyncs_total" in m.text
    r = httpx.get(f"{server.url}/loki/api/v1/query_range",
                  params={"query": '{job="x"}', "limit": "5001"})
    assert r.status_code == 400 and "max entries limit" in r.text
    r = httpx.get(f"{server.url}/loki/api/v1/query_range", params={"query": '{job="x"} |= '})
    assert r.status_code == 400 and r.text.startswith("parse error at line 1, col")
    r = httpx.get(f"{server.url}/loki/api/v1/format_query",
                  params={"query": '{job="x"}|="a"   |json'})
    assert r.json()["data"] == '{job="x"} |= "a" | json'


def test_heartbeats_feed_the_pipeline_view(server: ServerProcess) -> None:
    hb = {"id": "agent-1", "kind": "agent", "name": "edge", "host": "h", "pid": 1,
          "token": "t1", "ts": time.time(), "interval_s": 1.0,
          "queue": {"depth": 5, "capacity": 10, "bytes": 50, "max_bytes": 100,
                    "when_full": "spill", "high_watermark": 7}}
    url = f"{server.url}/sluiceway/api/v1/heartbeat"
    assert httpx.post(url, content=b"[1]").status_code == 400
    assert httpx.post(url, content=b"{nope").status_code == 400

    def card() -> dict:
        return httpx.get(f"{server.url}/sluiceway/api/v1/pipeline").json()["data"][0]

    # Fresh right after a heartbeat (stale after 3 × interval_s without one): a busy
    # machine may take longer than that between two requests, so a pair is tried again.
    deadline = time.monotonic() + 60
    while True:
        assert httpx.post(url, content=orjson.dumps(hb)).status_code == 204
        row = card()
        assert row["id"] == "agent-1"
        if row["stale"] is False or time.monotonic() > deadline:
            break
    assert row["stale"] is False
    while card()["stale"] is not True:  # and stale once the heartbeats stop
        assert time.monotonic() < deadline + 60
        time.sleep(0.2)


def test_query_timeout_is_a_504_not_a_hang(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    # 1 ms: past by the time the first block is read, however fast the machine is
    cfg.write_text("storage:\n  chunk_target_size: 20KiB\nlimits:\n  query_timeout: 1ms\n")
    srv = ThreadServer(tmp_path / "data", config=cfg).start()
    now = time.time_ns()
    for b in range(5):
        assert _push(srv, [[str(now - 10**11 + b * 10**6 + i), "x" * 200 + str(i)]
                           for i in range(500)], job="slow").status_code == 204
    t0 = time.monotonic()
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
        "query": 'sum(count_over_time({job="slow"} |~ "(x+x+)+y" [1m]))',
        "start": str(now - 2 * 10**11), "end": str(now), "step": "1"})
    srv.stop()
    assert r.status_code == 504 and "timed out" in r.text
    assert time.monotonic() - t0 < 10


def test_metric_query_over_max_series_is_a_400(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("limits:\n  max_query_series: 3\n")
    srv = ThreadServer(tmp_path / "data", config=cfg).start()
    now = time.time_ns()
    body = orjson.dumps({"streams": [{"stream": {"job": "many", "n": str(i)},
                                      "values": [[str(now - 10**9), "x"]]} for i in range(5)]})
    assert httpx.post(f"{srv.url}/loki/api/v1/push", content=body, headers=JSON).status_code \
        == 204
    r = httpx.get(f"{srv.url}/loki/api/v1/query", params={
        "query": 'count_over_time({job="many"}[1m])', "time": str(now)})
    ok = httpx.get(f"{srv.url}/loki/api/v1/query", params={
        "query": 'sum(count_over_time({job="many"}[1m]))', "time": str(now)})
    srv.stop()
    assert r.status_code == 400 and "maximum of series (3)" in r.text
    assert ok.status_code == 200 and ok.json()["data"]["result"][0]["value"][1] == "5"


def test_tail_client_leaving_is_noticed(server_process: ServerProcess) -> None:
    from websockets.sync.client import connect

    for _ in range(3):
        with connect(f"ws://127.0.0.1:{server_process.port}/loki/api/v1/tail?query=%7Bjob%3D%22t%22%7D"):
            time.sleep(0.2)
    time.sleep(0.5)
    t0 = time.monotonic()
    server_process.stop()  # must not wait for the departed tail sessions
    assert time.monotonic() - t0 < 8
