"""Chaos: real processes on 127.0.0.1 — two apps logging through the client (one in spill
mode with a Loki sink and a file sink, one in drop mode with a tiny queue), an agent
tailing the first app's file, a server — while the server is stopped and continued at
random, and the agent and the server are SIGKILLed and restarted. At the end every
source's ledger balances with nothing unexplained — the file sink's lines under the app's
own numbers, shipped by the agent (lineage); the drop-mode source misses exactly the
numbers it counted lost (sets, not counts); the spill sources lost nothing.

Bounded: the apps log for about 15 s; settling waits at most 3 minutes (polled)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.agent.agentproc import AgentProcess
from tests.procs import REPO, ServerProcess, free_port

COUNT = 2000


def app(cfg: dict[str, Any], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.ledger.app",
                             orjson.dumps(cfg).decode()], cwd=REPO,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115


def ledger_rows(url: str) -> list[dict[str, Any]]:
    try:
        r = httpx.get(f"{url}/sluiceway/api/v1/ledger", timeout=5)
    except httpx.HTTPError:
        return []
    if r.status_code != 200:
        return []
    rows: list[dict[str, Any]] = r.json()["data"]["sources"]
    return rows


def test_every_source_balances_after_chaos(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(tmp_path / "data", port=port).start()
    logs = tmp_path / "logs"
    logs.mkdir()
    agent = AgentProcess(tmp_path, {
        "url": url, "heartbeat_interval": 0.3, "positions_sync": 0.2, "timeout": 2,
        "batch": {"max_lines": 100, "max_wait": 0.05},
        "retry": {"min_backoff": 0.1, "max_backoff": 1.0},
        "inputs": [{"type": "file", "paths": [str(logs / "app.log")],
                    "start_at": "beginning", "poll_interval": 0.05}]})
    (logs / "app.log").touch()
    agent.start()
    spill_app = app({"url": url, "name": "spiller", "when_full": "spill",
                     "spill_dir": str(tmp_path / "spill"), "file": str(logs / "app.log"),
                     "count": COUNT, "rate": 150, "flush": 150}, tmp_path / "spiller.log")
    drop_app = app({"url": url, "name": "dropper", "when_full": "drop", "queue_size": 4,
                    "batch": 4, "count": COUNT, "rate": 150, "flush": 150},
                   tmp_path / "dropper.log")
    actions: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while spill_app.poll() is None and drop_app.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.5, 2.0))
            what = rnd.choice(["stop", "stop", "kill_agent", "kill_server"])
            actions.append(what)
            if what == "stop":
                server.signal(signal.SIGSTOP)
                time.sleep(rnd.uniform(0.2, 1.5))
                server.signal(signal.SIGCONT)
            elif what == "kill_agent":
                agent.kill()
                agent.start()
            else:
                server.kill()
                server.start()
        for proc in (spill_app, drop_app):
            proc.wait(200)
        assert spill_app.returncode == 0 and drop_app.returncode == 0
        lines = (logs / "app.log").read_bytes().count(b"\n")
        assert lines == COUNT
        # the file's lines keep the app's numbers through the agent (lineage)
        want = {"spiller": COUNT, "spiller-file": COUNT, "dropper": COUNT}
        deadline = time.monotonic() + 180
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = ledger_rows(url)
            by = {_kind(r["source"]): r for r in rows}
            if set(by) == set(want) and all(
                    by[k]["emitted"] == n and by[k]["in_flight"] == 0
                    and by[k]["unexplained"] == 0 for k, n in want.items()):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"seed {seed}, actions {actions}: not balanced: {rows}")
        by = {_kind(r["source"]): r for r in rows}
        for k in ("spiller", "spiller-file"):  # spill and the file lose nothing
            assert by[k]["lost"] == 0 and by[k]["missing"] == [], (seed, actions, by[k])
            assert by[k]["stored"] == COUNT
        d = by["dropper"]
        assert d["lost_ranges"] is not None and d["missing"] == d["lost_ranges"], \
            (seed, actions, d)
        assert d["stored"] + d["lost"] == COUNT and d["overcounted"] == 0
        print(f"chaos seed {seed}: {actions}; dropper lost {d['lost']} "
              f"({d['lost_by']}), {len(d['missing'] or [])} runs")
    finally:
        server.signal(signal.SIGCONT)
        for proc in (spill_app, drop_app):
            if proc.poll() is None:
                proc.kill()
        agent.kill()
        server.stop()


def _kind(source: str) -> str:
    if source.startswith("client/spiller/"):
        return "spiller-file" if "/file-" in source else "spiller"
    if source.startswith("client/dropper/"):
        return "dropper"
    return "agent" if source.startswith("agent-") else source
