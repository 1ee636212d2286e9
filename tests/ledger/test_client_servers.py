"""A client with Loki sinks to two servers: each sink reports its own losses, under its
own source, to the server it pushes to (a heartbeat of its own there)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.procs import REPO, ServerProcess


def rows(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/sluiceway/api/v1/ledger", timeout=10)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["data"]["sources"]
    return out


def settled(url: str, count: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        last = rows(url)
        if len(last) == 1 and last[0]["emitted"] == count and last[0]["in_flight"] == 0 \
                and last[0]["unexplained"] == 0 and last[0]["overcounted"] == 0:
            return last[0]
        time.sleep(0.2)
    raise AssertionError(f"no settled row at {count}: {last}")


def test_each_sink_reports_its_losses_to_its_own_server(tmp_path: Path) -> None:
    one = ServerProcess(tmp_path / "one").start()
    two = ServerProcess(tmp_path / "two").start()
    try:
        app = {"url": one.url, "url2": two.url, "name": "twin", "when_full": "drop",
               "queue_size": 20, "count": 3000, "flush": 30}
        out = subprocess.run([sys.executable, "-m", "tests.ledger.app",
                              orjson.dumps(app).decode()], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        first, second = settled(one.url, 3000), settled(two.url, 3000)
        assert first["source"] != second["source"]
        for row in (first, second):
            lost = sum(x["lines"] for x in row["lost_by"])
            assert row["stored"] + lost == 3000
            assert row["missing"] == row["lost_ranges"]
        assert sum(x["lines"] for x in second["lost_by"]) > 0
    finally:
        one.stop()
        two.stop()
