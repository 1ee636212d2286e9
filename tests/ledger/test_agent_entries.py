"""Inputs the ledger numbers by entry: a file with a joining stage (multiline) counts
one number per joined entry, across an agent SIGKILL (a partial entry read again gets
the same number); the Loki push input numbers what it takes, and a relayed push (an
in-app client pushing to the agent) keeps the client's numbers, whose heartbeats reach
the server through the agent."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.agent.agentproc import AgentProcess
from tests.procs import REPO, ServerProcess, free_port


def rows(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/sluiceway/api/v1/ledger", timeout=10)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["data"]["sources"]
    return out


def wait_settled(url: str, pick: Any, emitted: int, timeout: float = 90.0
                 ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        last = [r for r in rows(url) if pick(r["source"])]
        if len(last) == 1 and last[0]["emitted"] == emitted and last[0]["in_flight"] == 0 \
                and last[0]["unexplained"] == 0 and last[0]["overcounted"] == 0:
            return last[0]
        time.sleep(0.2)
    raise AssertionError(f"no settled row at {emitted}: {last}")


def write_entries(path: Path, start: int, n: int, rnd: random.Random) -> None:
    """`n` entries, each a first line and 0 to 3 continuation lines."""
    with open(path, "a") as f:
        for i in range(start, start + n):
            f.write(f"ENTRY {i} " + "x" * 30 + "\n")
            f.write("".join(f"  at frame {k} of entry {i}\n" for k in range(rnd.randrange(4))))


def file_config(server: ServerProcess, logs: Path, **queue: Any) -> dict[str, Any]:
    return {"url": server.url, "heartbeat_interval": 0.3, "positions_sync": 0.2,
            "batch": {"max_lines": 50, "max_wait": 0.05}, "queue": queue,
            "inputs": [{"type": "file", "paths": [str(logs / "*.log")],
                        "start_at": "beginning", "poll_interval": 0.05,
                        "pipeline": [{"multiline": {"firstline": "^ENTRY ",
                                                    "max_wait_time": "300ms"}}]}]}


def test_joined_entries_are_numbered_across_a_restart(tmp_path: Path) -> None:
    rnd = random.Random(7)
    server = ServerProcess(tmp_path / "data").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    write_entries(logs / "a.log", 0, 1500, rnd)
    agent = AgentProcess(tmp_path, file_config(server, logs, when_full="spill"))
    try:
        agent.start()
        agent.wait_for(lambda s: s["lines"]["shipped"] >= 300, what="some entries shipped")
        agent.kill()  # SIGKILL: a partial entry is read again, from its first line
        write_entries(logs / "a.log", 1500, 500, rnd)
        agent.start()
        row = wait_settled(server.url, lambda s: s.startswith("agent-"), 2000)
        assert row["stored"] == 2000 and row["lost"] == 0 and row["missing"] == []
    finally:
        agent.kill()
        server.stop()


def test_a_dropping_joiner_loses_exactly_the_entries_it_counts(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    write_entries(logs / "a.log", 0, 2000, random.Random(3))
    agent = AgentProcess(tmp_path, file_config(server, logs, when_full="drop", capacity=40))
    try:
        agent.start()
        row = wait_settled(server.url, lambda s: s.startswith("agent-"), 2000)
        lost = sum(x["lines"] for x in row["lost_by"])
        assert lost > 0 and row["stored"] + lost == 2000
        assert row["missing"] == row["lost_ranges"]
    finally:
        agent.kill()
        server.stop()


def push_config(server: ServerProcess, port: int, **extra: Any) -> dict[str, Any]:
    return {"url": server.url, "heartbeat_interval": 0.3,
            "batch": {"max_lines": 50, "max_wait": 0.05},
            "inputs": [{"type": "loki_push", "listen": f"127.0.0.1:{port}", **extra}]}


def test_the_push_input_numbers_what_it_takes(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    port = free_port()
    agent = AgentProcess(tmp_path, push_config(server, port, pipeline=[
        {"match": {"selector": '{app="p"} |= "drop me"', "action": "drop"}}]))
    try:
        agent.start()
        for k in range(10):
            now = time.time_ns()
            values = [[str(now + i), f"line {k}.{i}" + (" drop me" if i % 10 == 0 else "")]
                      for i in range(100)]
            r = httpx.post(f"http://127.0.0.1:{port}/loki/api/v1/push", content=orjson.dumps(
                {"streams": [{"stream": {"app": "p"}, "values": values}]}),
                headers={"Content-Type": "application/json"}, timeout=10)
            assert r.status_code == 204, r.text
        row = wait_settled(server.url, lambda s: "/loki_push:" in s, 1000)
        assert row["stored"] == 900
        assert row["lost_by"] == [{"hop": "agent", "reason": "filtered", "lines": 100}]
    finally:
        agent.kill()
        server.stop()


def test_a_client_relayed_through_the_push_input_reaches_the_ledger(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    port = free_port()
    agent = AgentProcess(tmp_path, push_config(server, port))
    try:
        agent.start()
        app = {"url": f"http://127.0.0.1:{port}", "name": "relayed", "when_full": "block",
               "count": 600, "flush": 30}
        out = subprocess.run([sys.executable, "-m", "tests.ledger.app",
                              orjson.dumps(app).decode()], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        row = wait_settled(server.url, lambda s: s.startswith("client/relayed/"), 600)
        assert row["stored"] == 600 and row["lost"] == 0 and row["missing"] == []
        # the lines kept the client's numbers: the agent's own source stored none
        assert all(r["stored"] == 0 for r in rows(server.url) if "/loki_push:" in r["source"])
    finally:
        agent.kill()
        server.stop()


def test_a_push_input_with_a_joiner_numbers_its_entries(tmp_path: Path) -> None:
    """A line input (no file to read again) with a multiline stage: one number per
    entry; the last entry, held at a clean stop, is sent and counted."""
    server = ServerProcess(tmp_path / "data").start()
    port = free_port()
    agent = AgentProcess(tmp_path, push_config(server, port, labels={"job": "raw"}, pipeline=[
        {"multiline": {"firstline": "^ENTRY ", "max_wait_time": "1h"}}]))
    try:
        agent.start()
        rnd = random.Random(5)
        for k in range(3):
            body = "".join(f"ENTRY {i} " + "x" * 20 + "\n"
                           + "".join(f"  frame {j}\n" for j in range(rnd.randrange(4)))
                           for i in range(k * 100, k * 100 + 100))
            r = httpx.post(f"http://127.0.0.1:{port}/promtail/api/v1/raw",
                           content=body.encode(), timeout=10)
            assert r.status_code == 204, r.text
        # 299 entries went out; the 300th is held (in flight at the reader) until the stop
        deadline = time.monotonic() + 90
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            row = next((r for r in rows(server.url) if "/loki_push:" in r["source"]), {})
            # The agent's heartbeat (where the line in flight is) can lag the server's own
            # count of stored lines: wait for both to settle.
            if row.get("stored") == 299 and row.get("emitted") == 300 \
                    and row.get("in_flight") == 1 and row.get("in_flight_by") == [
                        {"hop": "agent", "where": "reader", "lines": 1}]:
                break
            time.sleep(0.2)
        assert row["stored"] == 299, row
        assert row["in_flight_by"] == [{"hop": "agent", "where": "reader", "lines": 1}], row
        assert row["unexplained"] == 0
        assert agent.stop() == 0
        row = wait_settled(server.url, lambda s: "/loki_push:" in s, 300)
        assert row["stored"] == 300 and row["missing"] == [], row["lost_by"]
    finally:
        agent.kill()
        server.stop()
