"""The agent's numbers reach the server's ledger: a file's lines are stored or counted
lost by number, across an agent SIGKILL and restart (lines read again keep their
numbers and count once)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.agent.agentproc import AgentProcess
from tests.procs import ServerProcess


def rows(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/sluiceway/api/v1/ledger", timeout=10)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["data"]["sources"]
    return out


def wait_balanced(url: str, emitted: int, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        last = rows(url)
        if len(last) == 1 and last[0]["emitted"] == emitted and last[0]["in_flight"] == 0 \
                and last[0]["unexplained"] == 0 and last[0]["overcounted"] == 0:
            return last[0]
        time.sleep(0.2)
    raise AssertionError(f"the ledger did not settle at {emitted}: {last}")


def agent_config(server: ServerProcess, logs: Path, **queue: Any) -> dict[str, Any]:
    return {"url": server.url, "heartbeat_interval": 0.3, "positions_sync": 0.2,
            "batch": {"max_lines": 50, "max_wait": 0.05},
            "queue": queue, "inputs": [{"type": "file", "paths": [str(logs / "*.log")],
                                        "start_at": "beginning", "poll_interval": 0.05}]}


def write(path: Path, start: int, n: int) -> None:
    with open(path, "a") as f:
        f.write("".join(f"line {i} " + "x" * 40 + "\n" for i in range(start, start + n)))


def test_a_dropping_agent_loses_exactly_the_numbers_it_counts(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", 0, 4000)
    agent = AgentProcess(tmp_path, agent_config(server, logs, when_full="drop", capacity=60))
    try:
        agent.start()
        row = wait_balanced(server.url, 4000)
        lost = sum(x["lines"] for x in row["lost_by"])
        assert lost > 0 and row["stored"] + lost == 4000
        assert row["missing"] == row["lost_ranges"]
        assert all(x["hop"] == "agent" for x in row["lost_by"])
    finally:
        agent.kill()
        server.stop()


def test_an_agent_killed_and_restarted_counts_each_line_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", 0, 3000)
    agent = AgentProcess(tmp_path, agent_config(server, logs, when_full="spill"))
    try:
        agent.start()
        agent.wait_for(lambda s: s["lines"]["shipped"] >= 500, what="some lines shipped")
        agent.kill()  # SIGKILL: positions a little behind what the server has
        write(logs / "a.log", 3000, 1000)
        agent.start()
        row = wait_balanced(server.url, 4000)
        assert row["stored"] == 4000 and row["lost"] == 0 and row["missing"] == []
    finally:
        agent.kill()
        server.stop()


def test_a_client_file_read_by_the_agent_keeps_the_client_numbers(tmp_path: Path) -> None:
    """Lineage: the app's file sink numbers its lines; until an agent reads them they
    are in flight in the file (not unexplained); the agent ships them under the app's
    source and numbers."""
    import subprocess
    import sys

    import orjson

    from tests.procs import REPO

    server = ServerProcess(tmp_path / "data").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    app = {"url": server.url, "name": "lineage", "when_full": "block", "count": 300,
           "file": str(logs / "app.log"), "flush": 30}
    out = subprocess.run([sys.executable, "-m", "tests.ledger.app",
                          orjson.dumps(app).decode()], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    agent = AgentProcess(tmp_path, agent_config(server, logs, when_full="spill"))
    try:
        [row] = [r for r in rows(server.url) if "/file-" in r["source"]]
        assert row["emitted"] == 300 and row["stored"] == 0 and row["unexplained"] == 0
        assert row["in_flight_by"] == [{"hop": "agent", "where": "file", "lines": 300}]
        agent.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            [row] = [r for r in rows(server.url) if "/file-" in r["source"]]
            if row["stored"] == 300:
                break
            time.sleep(0.2)
        assert row["stored"] == 300 and row["in_flight"] == 0 and row["unexplained"] == 0
        assert row["source"].startswith("client/lineage/")
        assert not [r for r in rows(server.url) if r["source"].startswith("agent-")]
    finally:
        agent.kill()
        server.stop()
