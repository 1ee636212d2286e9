"""A clean stop (SIGTERM) writes every head to chunks at once, says how long that took,
and never waits on the WAL writer it has already closed."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from sluiceway.model import EntryBlock
from sluiceway.store import Store, StoreConfig
from tests.procs import ServerProcess


def test_sigterm_flushes_everything_and_logs_the_final_flush(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    base = time.time_ns() - 10**10
    for s in range(20):
        body = orjson.dumps({"streams": [{"stream": {"job": "stop", "s": str(s)}, "values": [
            [str(base + i), f"stream {s} line {i}"] for i in range(500)]}]})
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 204
    assert srv.proc is not None
    srv.signal(signal.SIGTERM)
    assert srv.proc.wait(120) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    log = srv.log()
    m = re.search(r"final flush: (\d+) chunks? of (\d+) streams? written in (\d+\.\d+)s", log)
    assert m, log[-2000:]
    assert (int(m.group(1)), int(m.group(2))) == (20, 20)
    assert "Traceback" not in log
    wal = tmp_path / "data" / "wal"
    assert sum(p.stat().st_size for p in wal.glob("*.wal")) == 0  # all of it is in chunks
    srv.start()
    r = httpx.get(f"{srv.url}/loki/api/v1/index/stats", params={
        "query": '{job="stop"}', "start": str(base - 1), "end": str(time.time_ns())})
    srv.stop()
    assert (r.json()["streams"], r.json()["entries"]) == (20, 10_000)
    assert "replayed" not in srv.log()


def test_close_never_asks_the_closed_wal_writer_to_rotate(tmp_path: Path) -> None:
    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    block = EntryBlock.from_lines({"app": "a"}, np.arange(5, dtype=np.int64) + time.time_ns(),
                                  [b"x %d" % i for i in range(5)])
    st.push("fake", [block]).result()
    asked: list[bool] = []
    real = st.wal.request_rotation

    def request_rotation() -> None:
        asked.append(st.wal.closed)
        real()

    st.wal.request_rotation = request_rotation  # type: ignore[method-assign]
    st.close()
    assert True not in asked
    assert not list((tmp_path / "wal").glob("*.wal"))
