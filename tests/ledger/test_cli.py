"""`sluiceway ledger`: the table, JSON, and exit code 2 with a message on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from sluiceway import client
from tests.inproc import inproc_server, wait_for
from tests.procs import REPO


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluiceway", "ledger", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_the_ledger_command(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data") as srv:
        client.configure([client.LokiSink(srv.url, labels={"app": "cli"}, batch_wait=0.05)],
                         when_full="block", report_interval=0.2, capture_stdlib=False,
                         handle_signals=False, name="cli")
        log = client.get_logger("t")
        for i in range(25):
            log.info("line", n=i)
        assert client.flush(30)

        def seen() -> bool:
            rows = srv.http.get("/sluiceway/api/v1/ledger").json()["data"]["sources"]
            return bool(rows) and rows[0]["stored"] == 25 and rows[0]["emitted"] == 25

        wait_for(seen, "the ledger to show the lines")
        js = orjson.loads(cli("--addr", srv.url, "-o", "json").stdout)
        assert js["total"]["stored"] == 25 and js["total"]["unexplained"] == 0
        out = cli("--addr", srv.url, "--since", "1h")
        assert out.returncode == 0, out.stderr
        head, row, total, unattributed = out.stdout.splitlines()
        assert head.split()[:3] == ["SOURCE", "EPOCH", "EMITTED"]
        assert row.startswith("client/cli/") and row.split()[2:5] == ["25", "25", "0"]
        assert total.split() == ["total", "25", "25", "0", "0", "0"]
        assert unattributed.endswith(": 0")
        for bad in (["--since", "yesterday-ish"], ["--addr", "localhost:3100"],
                    ["--since", "100", "--until", "50"]):
            r = cli("--addr", srv.url, *bad) if bad[0] != "--addr" else cli(*bad)
            assert r.returncode == 2, (bad, r.stdout, r.stderr)
            assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr, r.stderr
        r = srv.http.get("/sluiceway/api/v1/ledger", params={"since": "x"})
        assert r.status_code == 400 and "since" in r.text
        r = srv.http.get("/sluiceway/api/v1/ledger", params={"from": "1"})
        assert r.status_code == 400 and "unknown parameter" in r.text
