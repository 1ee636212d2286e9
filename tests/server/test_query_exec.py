"""Query execution in a real server: a query's work stops when its client disconnects;
`max_query_bytes_read` answers 400 with Loki's text; stats count blocks and splits."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import orjson

from tests.inproc import ThreadServer, wait_for
from tests.procs import ServerProcess

BLOCKS = 40
LINES = 1500


def _push_blocks(srv: ServerProcess, now: int) -> None:
    """BLOCKS chunks of one stream, one second apart: each push is flushed to its own
    chunk (the in-memory head would be read as one block)."""
    for b in range(BLOCKS):
        values = [[str(now - (BLOCKS - b) * 10**9 + i), f"k{i % 7}=v{b} a=b msg=\"x y\""]
                  for i in range(LINES)]
        body = {"streams": [{"stream": {"job": "cx"}, "values": values}]}
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=orjson.dumps(body),
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 204, r.text
        assert httpx.post(f"{srv.url}/flush", timeout=60).status_code < 300


def _blocks_read(srv: ServerProcess) -> float:
    text = httpx.get(f"{srv.url}/metrics").text
    m = re.search(r"^sluiceway_query_blocks_read_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_query_work_stops_when_the_client_disconnects(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    # One thread and the per-line engine (a template): each block costs real time.
    cfg.write_text("limits:\n  max_query_parallelism: 1\n")
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    try:
        now = time.time_ns()
        _push_blocks(srv, now)
        q = ('sum(count_over_time({job="cx"} | logfmt | line_format "{{.k0}}{{.k1}}'
             '{{.k2 | ToUpper | ToLower | ToUpper}}{{.msg | trunc 3}}" |~ "V.*x" [1h]))')
        qs = urlencode({"query": q, "start": str(now - 3600 * 10**9), "end": str(now),
                        "step": "60"})
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(f"GET /loki/api/v1/query_range?{qs} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_for(lambda: _blocks_read(srv) > 0, "the query to start reading blocks")
        sock.close()
        wait_for(lambda: "query cancelled: client disconnected" in srv.log(),
              "the server to see the disconnect")
        stopped_at = _blocks_read(srv)
        assert stopped_at < BLOCKS, "the query read every block: it was not stopped"
        # The work has stopped: no block is read after the cancel was logged.
        time.sleep(0.5)
        assert _blocks_read(srv) == stopped_at
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert re.search(r"^sluiceway_queries_cancelled_total 1\.0$", metrics, re.M)
    finally:
        srv.stop()


def test_max_query_bytes_read_and_stats(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("limits:\n  max_query_bytes_read: 100KB\n"
                   "  split_queries_by_interval: 1m\n")
    srv = ThreadServer(tmp_path / "data", config=cfg).start()
    try:
        # 15 s before a whole minute: the narrow query's range (30 s earlier) then lies
        # inside one 1m split whatever the clock says (it straddled two at :29-:31).
        now = time.time_ns() // (60 * 10**9) * (60 * 10**9) - 15 * 10**9
        _push_blocks(srv, now)
        base = {"start": str(now - 3600 * 10**9), "end": str(now), "step": "60"}
        r = httpx.get(f"{srv.url}/loki/api/v1/query_range",
                      params={**base, "query": 'sum(count_over_time({job="cx"}[1h]))'})
        assert r.status_code == 400
        assert r.text.startswith("the query would read too many bytes (query: ")
        assert "limit: 100 KiB); consider adding more specific stream selectors" in r.text
        # Narrow enough: one push (one block) of the 120, in one 1m split.
        narrow = {"start": str(now - 30 * 10**9), "end": str(now - 29 * 10**9), "step": "1"}
        r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
            **narrow, "query": 'sum by (k0) (count_over_time({job="cx"} | logfmt [1s]))'})
        assert r.status_code == 200, r.text
        stats = r.json()["data"]["stats"]
        assert stats["summary"]["splits"] == 1
        assert stats["querier"]["store"]["totalChunksDownloaded"] >= 1
        assert stats["summary"]["totalLinesProcessed"] >= LINES
    finally:
        srv.stop()


def _cache_stats(r: httpx.Response) -> tuple[int, int, int]:
    c = r.json()["data"]["stats"]["cache"]["result"]
    return c["entriesRequested"], c["entriesFound"], c["entriesStored"]


def test_results_cache_recomputes_only_the_newest_split(tmp_path: Path) -> None:
    """A dashboard refresh (same query, later end) takes the closed splits from the
    cache and computes only the newest; a compaction bumps the store's generation and
    the next query computes everything again, with the same answer."""
    srv = ThreadServer(tmp_path / "data").start()
    try:
        hour = 3600 * 10**9
        t0 = time.time_ns() // hour * hour - 5 * hour
        values = [[str(t0 + k * 30 * 10**9), f"level={('info', 'warn', 'error')[k % 3]} k={k}"]
                  for k in range(480)]
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=orjson.dumps(
            {"streams": [{"stream": {"job": "rc"}, "values": values}]}),
            headers={"Content-Type": "application/json"})
        assert r.status_code == 204, r.text
        q = 'sum by (level) (count_over_time({job="rc"} | logfmt [5m]))'

        def run(end: int) -> httpx.Response:
            r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={
                "query": q, "start": str(t0), "end": str(end), "step": "60"}, timeout=120)
            assert r.status_code == 200, r.text
            return r

        # Splits: the first 5 minutes before t0, three whole hours, the part of the last.
        first = run(t0 + 3 * hour + hour // 2)
        assert _cache_stats(first) == (5, 0, 5)
        refresh = run(t0 + 3 * hour + 3 * hour // 4)
        assert _cache_stats(refresh) == (5, 4, 1)  # only the newest split was computed
        assert refresh.json()["data"]["stats"]["summary"]["splits"] == 5
        assert httpx.post(f"{srv.url}/flush", timeout=60).status_code < 300
        c = httpx.post(f"{srv.url}/sluiceway/api/v1/compact", params={"min_age": "0s"},
                       timeout=120)
        assert c.status_code == 200 and c.json()["data"]["chunks_in"] >= 1, c.text
        again = run(t0 + 3 * hour + 3 * hour // 4)
        assert _cache_stats(again) == (5, 0, 5)  # the generation changed: nothing reused
        assert again.json()["data"]["result"] == refresh.json()["data"]["result"]
        total = sum(float(v) for s in again.json()["data"]["result"] for _, v in s["values"])
        assert total > 0
    finally:
        srv.stop()
