"""Acked means durable: SIGKILL the server mid-stream, restart, every acked line is there once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson

from tests.procs import ServerProcess


def _body(writer: int, batch: int, base_ns: int) -> bytes:
    values = [[str(base_ns + writer * 10**9 + batch * 1000 + i),
               f"w{writer} b{batch} l{i} " + "x" * 80] for i in range(50)]
    return orjson.dumps({"streams": [{"stream": {"job": "dur", "writer": str(writer)},
                                      "values": values}]})


def _count(srv: ServerProcess) -> list[str]:
    """Every line of the test streams, paging forward 5000 at a time (Loki's max limit)."""
    lines: list[str] = []
    for w in range(4):
        start = time.time_ns() - 3600 * 10**9
        while True:
            r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
                "query": f'{{job="dur", writer="{w}"}}', "start": str(start),
                "end": str(time.time_ns() + 60 * 10**9), "limit": "5000",
                "direction": "forward"})
            assert r.status_code == 200, r.text
            values = [v for s in r.json()["data"]["result"] for v in s["values"]]
            lines += [v[1] for v in values]
            if len(values) < 5000:
                break
            start = max(int(v[0]) for v in values) + 1  # timestamps are unique per writer
    return lines


def test_sigkill_loses_no_acked_line_and_duplicates_none(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    base = time.time_ns() - 600 * 10**9
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(timeout=5) as c:
            for b in range(10_000):
                if stop.is_set():
                    return
                try:
                    r = c.post(f"{srv.url}/loki/api/v1/push", content=_body(w, b, base),
                               headers={"Content-Type": "application/json"})
                except httpx.HTTPError:
                    return  # server died: this batch was never acked
                if r.status_code == 204:
                    with lock:
                        acked.extend(f"w{w} b{b} l{i} " + "x" * 80 for i in range(50))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 20_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill()  # SIGKILL while all four writers are mid-stream
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 1000, "writers made too little progress to test anything"
    srv.start()
    got = _count(srv)
    srv.stop()
    assert len(got) == len(set(got)), "a line came back twice"
    missing = set(acked) - set(got)
    assert not missing, f"{len(missing)} acked lines lost, e.g. {sorted(missing)[:3]}"
