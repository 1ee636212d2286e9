"""Lines that vanish outside the rules — a spill segment deleted by hand while the app
was stopped — show in the ledger as unexplained: no hop counted them lost, no queue
holds them, the server never stored them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.procs import REPO, ServerProcess, free_port


def run_app(cfg: dict[str, Any]) -> str:
    out = subprocess.run([sys.executable, "-m", "tests.ledger.app",
                          orjson.dumps(cfg).decode()],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_a_deleted_spill_segment_shows_as_unexplained(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spill = tmp_path / "spill"
    app = {"url": url, "name": "vanish", "when_full": "spill", "spill_dir": str(spill),
           "count": 300, "shutdown_timeout": 1.0}
    # the server is not there yet: every record waits in the spill at exit
    out = run_app(app)
    assert "kept in the spill" in out, out
    segments = list(spill.glob("*/*.seg"))
    assert len(segments) == 1  # the one segment holds all 300 records
    segments[0].unlink()  # by hand: no hop counts what a deleted file held
    server = ServerProcess(tmp_path / "data", port=port).start()
    try:
        run_app({**app, "count": 20, "flush": 30})
        deadline = time.monotonic() + 60
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            rows = httpx.get(f"{url}/sluiceway/api/v1/ledger").json()["data"]["sources"]
            if rows and rows[0]["emitted"] == 320 and rows[0]["in_flight"] == 0:
                row = rows[0]
                break
            time.sleep(0.2)
        assert row, "the ledger never saw the second run"
        assert row["stored"] == 20 and row["lost"] == 0
        assert row["unexplained"] == 300
        assert row["missing"] == [[0, 300]]
        m = httpx.get(f"{url}/metrics").text
        series = f'sluiceway_ledger_unexplained_lines{{source="{row["source"]}",tenant="fake"}}'
        assert f"{series} 300.0" in m
    finally:
        server.stop()
