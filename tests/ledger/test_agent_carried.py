"""The agent's losses of numbers it carries: a client's (lineage) survive an agent
restart (saved with the positions), and every lane reports its own losses, under its
own source ids, to its own backend."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.agent.agentproc import AgentProcess
from tests.procs import ServerProcess

SRC, EP = "client/app/host/file-0000abcd", "e1"


def rows(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/sluiceway/api/v1/ledger", timeout=10)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["data"]["sources"]
    return out


def settled(row: dict[str, Any], emitted: int) -> bool:
    return (row["emitted"] == emitted and row["in_flight"] == 0
            and row["unexplained"] == 0 and row["overcounted"] == 0)


def wait_row(url: str, pick: Any, emitted: int, after: float = 0.0,
             timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        last = [r for r in rows(url) if pick(r["source"])]
        if len(last) == 1 and settled(last[0], emitted) and \
                (last[0]["last_report"] or 0) > after:
            return last[0]
        time.sleep(0.2)
    raise AssertionError(f"no settled row at {emitted}: {last}")


def client_beat(url: str, emitted: int) -> None:
    """The app's own report: it wrote `emitted` numbered lines to its file."""
    r = httpx.post(f"{url}/sluiceway/api/v1/heartbeat", content=orjson.dumps({
        "id": "app-1", "kind": "client", "token": "t" * 16, "ts": time.time(),
        "interval_s": 3600, "queue": {"capacity": 10, "depth": 0, "when_full": "block"},
        "ledger": [{"in_flight": {}, "entries": [
            {"source": SRC, "epoch": EP, "emitted": emitted, "lost": {},
             "lost_ranges": [], "handed_on": emitted}]}], "final": True}), timeout=10)
    assert r.status_code == 204, r.text


def file_sink_lines(path: Path, start: int, n: int) -> None:
    """Lines as the client's file sink writes them (its numbers on each)."""
    with open(path, "ab") as f:
        for i in range(start, start + n):
            f.write(orjson.dumps({"_ep": EP, "ts": "2026-12-05T00:00:00Z", "level": "info",
                                  "msg": f"record {i} " + "x" * 30, "_seq": i, "_src": SRC})
                    + b"\n")


def config(urls: list[str], logs: Path, **queue: Any) -> dict[str, Any]:
    return {"clients": [{"url": u} for u in urls], "heartbeat_interval": 0.3,
            "positions_sync": 0.2, "batch": {"max_lines": 50, "max_wait": 0.05},
            "queue": queue, "inputs": [{"type": "file", "paths": [str(logs / "*.log")],
                                        "start_at": "beginning", "poll_interval": 0.05}]}


def test_lost_client_numbers_are_remembered_across_an_agent_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    file_sink_lines(logs / "app.log", 0, 3000)
    client_beat(server.url, 3000)
    agent = AgentProcess(tmp_path, config([server.url], logs, when_full="drop", capacity=60))
    try:
        agent.start()
        row = wait_row(server.url, lambda s: s == SRC, 3000)
        lost = sum(x["lines"] for x in row["lost_by"])
        assert lost > 0 and row["missing"] == row["lost_ranges"]
        time.sleep(0.5)  # a positions save or two after the last loss
        agent.kill()  # SIGKILL: what was lost must come back from the positions file
        restarted = time.time()
        file_sink_lines(logs / "app.log", 3000, 500)  # the app went on writing
        client_beat(server.url, 3500)
        agent.start()
        row = wait_row(server.url, lambda s: s == SRC, 3500, after=restarted)
        assert sum(x["lines"] for x in row["lost_by"]) >= lost
        assert row["missing"] == row["lost_ranges"]
    finally:
        agent.kill()
        server.stop()


def test_every_lane_reports_its_own_losses_to_its_own_backend(tmp_path: Path) -> None:
    one = ServerProcess(tmp_path / "one").start()
    two = ServerProcess(tmp_path / "two").start()
    logs = tmp_path / "logs"
    logs.mkdir()
    with open(logs / "a.log", "w") as f:
        f.write("".join(f"line {i} " + "x" * 40 + "\n" for i in range(3000)))
    agent = AgentProcess(tmp_path, config([one.url, two.url], logs, when_full="drop",
                                          capacity=60))
    try:
        agent.start()
        first = wait_row(one.url, lambda s: s.startswith("agent-"), 3000)
        second = wait_row(two.url, lambda s: s.startswith("agent-"), 3000)
        assert second["source"] == first["source"] + "@c2"
        for row in (first, second):
            lost = sum(x["lines"] for x in row["lost_by"])
            assert lost > 0 and row["stored"] + lost == 3000
            assert row["missing"] == row["lost_ranges"]
    finally:
        agent.kill()
        one.stop()
        two.stop()
