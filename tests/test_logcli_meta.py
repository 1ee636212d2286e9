"""`sluiceway labels`, `series` and `volume` against a real server, as logcli names them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.procs import REPO, ServerProcess, sluiceway_cmd


def test_labels_series_volume(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    try:
        now = time.time_ns()
        body = {"streams": [
            {"stream": {"job": "api", "pod": f"p{i}"},
             "values": [[str(now - 10**9), f"line {i}"]]} for i in range(3)]}
        assert httpx.post(f"{srv.url}/loki/api/v1/push", json=body).status_code == 204

        def run(*args: str) -> str:
            r = subprocess.run(sluiceway_cmd(*args, "--addr", srv.url, "-q"), cwd=REPO,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            return r.stdout

        assert run("labels").split() == ["job", "pod"]
        assert run("labels", "pod").split() == ["p0", "p1", "p2"]
        assert sorted(run("series", '{job="api"}').splitlines()) == [
            f'{{job="api", pod="p{i}"}}' for i in range(3)]
        analyzed = run("series", '{job="api"}', "--analyze-labels")
        assert "Total Streams:  3" in analyzed and "Unique Labels:  2" in analyzed
        rows = [line.split() for line in analyzed.splitlines()]
        assert ["pod", "3", "3"] in rows and ["job", "1", "3"] in rows
        vol = run("volume", '{job="api"}', "--targetLabels", "job")
        assert '{job="api"}' in vol
    finally:
        srv.kill()
