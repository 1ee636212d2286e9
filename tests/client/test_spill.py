"""Spill: nothing lost across a backend outage followed by SIGKILL and a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.procs import REPO, ServerProcess


def child(url: str, spill: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.client.spill_child", url,
                             str(spill), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)


def query_ids(url: str) -> list[int]:
    now = time.time_ns()
    r = httpx.get(f"{url}/loki/api/v1/query_range",
                  params={"query": '{app="spilltest"}', "start": now - 600 * 10**9,
                          "end": now + 10**9, "limit": 5000, "direction": "forward"},
                  timeout=10)
    r.raise_for_status()
    return [json.loads(line)["i"] for s in r.json()["data"]["result"] for _, line in s["values"]]


def test_spill_survives_outage_and_sigkill(server_process: ServerProcess, tmp_path: Path) -> None:
    spill, n = tmp_path / "spill", 1000
    p = child(server_process.url, spill, "outage", "0", str(n))
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline().strip() == "delivered"
    server_process.signal(signal.SIGSTOP)  # outage: the server hangs, pushes time out
    try:
        p.stdin.write("go\n")
        p.stdin.flush()
        line = p.stdout.readline().split()
        assert line[0] == "spilled" and int(line[1]) == n - 200
        assert list(spill.rglob("*.seg"))
        os.kill(p.pid, signal.SIGKILL)  # no chance to flush anything
        p.wait(10)
    finally:
        server_process.signal(signal.SIGCONT)
    r = child(server_process.url, spill, "replay")
    out, _ = r.communicate(timeout=60)
    assert out.split()[:2] == ["flushed", "True"], out
    ids = query_ids(server_process.url)
    assert sorted(set(ids)) == list(range(n))  # at-least-once: every record arrived
    assert not list(spill.rglob("*.seg"))  # and the spill was freed after the acks


def test_spill_persists_memory_at_exit_and_replays(tmp_path: Path) -> None:
    """A clean exit during an outage keeps what could not be sent for the next start."""
    from tests.client.helpers import PushServer

    dead = "http://127.0.0.1:9"  # nothing listens: connection refused
    spill = tmp_path / "spill"
    code = ("from sluiceway import client\n"
            f"client.configure(sinks=[client.LokiSink({dead!r}, labels={{'app': 'x'}}, "
            "batch_wait=0)], when_full='spill', "
            f"spill_dir={str(spill)!r}, capture_stdlib=False, shutdown_timeout=0.5)\n"
            "log = client.get_logger('e')\n"
            "[log.info('rec', i=i) for i in range(300)]\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)
    srv = PushServer()
    try:
        code2 = ("from sluiceway import client\n"
                 f"client.configure(sinks=[client.LokiSink({srv.url!r}, labels={{'app': 'x'}}, "
                 "batch_wait=0)], when_full='spill', "
                 f"spill_dir={str(spill)!r}, capture_stdlib=False)\n"
                 "print(client.flush(10))\n")
        out = subprocess.run([sys.executable, "-c", code2], cwd=REPO, check=True, timeout=30,
                             capture_output=True, text=True).stdout
        assert out.strip() == "True"
        ids = sorted({json.loads(line)["i"] for line in srv.lines})
        assert ids == list(range(300))
    finally:
        srv.close()


def test_spill_files_hold_no_secrets(tmp_path: Path) -> None:
    from sluiceway import client
    from tests.client.helpers import wait_until

    class Down:
        name = "down"

        def write_batch(self, records: list[dict[str, object]]) -> None:
            raise client.SinkRetryable("backend down", retry_after=5)

    client.configure(sinks=[Down()], when_full="spill", spill_dir=tmp_path,
                     capture_stdlib=False)
    client.get_logger("s").info("login", user="ann", password="hunter2")
    wait_until(lambda: client.stats()["spilled"] == 1)
    data = b"".join(p.read_bytes() for p in tmp_path.rglob("*.seg"))
    assert b'"user":"ann"' in data and b"hunter2" not in data
