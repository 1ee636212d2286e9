"""`sluiceway up` (what `make up` runs): server, UI and demo agent; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.procs import REPO, free_port, sluiceway_cmd


def test_up_serves_ui_and_demo_logs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(sluiceway_cmd("up", "--listen", f"127.0.0.1:{port}",
                                          "--data-dir", str(tmp_path / "data")),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not lines:
            time.sleep(0.5)
            try:
                r = httpx.get(f"{url}/loki/api/v1/query_range",
                              params={"query": '{job="demo"}', "limit": "10"})
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                lines = [v[1] for s in r.json()["data"]["result"] for v in s["values"]]
        assert lines, "the demo agent shipped nothing"
        page = httpx.get(f"{url}/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 200 and "<html" in page.text.lower()
        reporters = httpx.get(f"{url}/sluiceway/api/v1/pipeline").json()["data"]
        assert any(r["kind"] == "agent" for r in reporters)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=30)
    text = out.decode(errors="replace")
    assert proc.returncode in (0, 130), text  # clean stop, or interrupted by Ctrl-C
    assert "Traceback" not in text, text
    assert list((tmp_path / "data").glob("tenants/*/chunks/*/*.chunk")), \
        "a clean stop flushes the heads to chunks"
