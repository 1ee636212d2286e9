"""stdin and syslog inputs, /status, /metrics, `sluiceway agent status` and heartbeats,
against a real server subprocess."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.agent.agentproc import fetch_lines
from tests.agent.conftest import Stack
from tests.procs import REPO, free_port, sluiceway_cmd


def test_stdin_ships_everything_then_exits(stack: Stack, tmp_path: Path) -> None:
    srv = stack.thread_server()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "url": srv.url, "data_dir": str(tmp_path / "ad"), "listen": None,
        "batch": {"max_lines": 300, "max_wait": "100ms"},
        "inputs": [{"type": "stdin", "labels": {"job": "stdin"},
                    "pipeline": [{"logfmt": {}}, {"labels": ["level"]}]}]}))
    lines = [f"level={'info' if i % 3 else 'error'} n={i:05d}" for i in range(5000)]
    r = subprocess.run(sluiceway_cmd("agent", "-c", str(cfg)), input="\n".join(lines).encode(),
                       capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert sorted(fetch_lines(srv, '{job="stdin"}')) == sorted(lines)
    assert len(fetch_lines(srv, '{job="stdin", level="error"}')) == 1667


def test_syslog_udp_and_tcp(stack: Stack, tmp_path: Path) -> None:
    srv = stack.thread_server()
    port = free_port()
    agent = stack.agent({
        "url": srv.url, "batch": {"max_wait": "100ms"},
        "inputs": [{"type": "syslog", "listen": f"127.0.0.1:{port}", "labels": {"job": "sys"},
                    "label_fields": ["app_name", "severity"]}]})
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)).encode()
    bsd = time.strftime("%b %e %H:%M:%S", time.gmtime(now)).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"<165>1 " + iso + b".000Z host1 web 42 ID7 - hello 5424", ("127.0.0.1", port))
        u.sendto(b"<11>" + bsd + b" host2 cron[7]: hello 3164", ("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port)) as c:
        framed = b"<14>1 " + iso + b".1Z host3 api - - - tcp one"
        c.sendall(str(len(framed)).encode() + b" " + framed)
        c.sendall(b"<14>1 " + iso + b".2Z host3 api - - - tcp two\n")
    agent.wait_for(lambda s: s["lines"]["shipped"] == 4, what="4 syslog lines shipped")
    assert fetch_lines(srv, '{job="sys", app_name="web", severity="notice"}') == ["hello 5424"]
    assert fetch_lines(srv, '{job="sys", app_name="cron", severity="error"}') == ["hello 3164"]
    assert fetch_lines(srv, '{job="sys", app_name="api"}') == [
        "tcp one", "tcp two"]


def test_status_metrics_cli_and_heartbeat(stack: Stack, tmp_path: Path) -> None:
    srv = stack.thread_server()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("".join(f"line {i}\n" for i in range(100)))
    agent = stack.agent({
        "url": srv.url, "name": "edge-1", "heartbeat_interval": "300ms",
        "queue": {"when_full": "drop", "capacity": 2000},
        "inputs": [{"type": "file", "paths": [str(logs / "*.log")], "start_at": "beginning",
                    "labels": {"job": "st"}}]})
    st = agent.wait_for(lambda s: s["lines"]["shipped"] == 100, what="file shipped")
    assert st["files"][0]["path"] == str(logs / "a.log")
    assert st["files"][0]["offset"] == st["files"][0]["size"] == (logs / "a.log").stat().st_size
    assert st["queue"]["when_full"] == "drop" and st["backend"]["ok"]
    metrics = httpx.get(f"{agent.url}/metrics").text
    assert "sluiceway_agent_lines_shipped_total 100" in metrics
    assert 'sluiceway_agent_queue_policy{when_full="drop"' in metrics
    assert f'sluiceway_agent_file_lag_bytes{{path="{logs / "a.log"}"}} 0' in metrics
    out = subprocess.run(sluiceway_cmd("agent", "status", "--url", agent.url),
                         capture_output=True, cwd=REPO, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    assert "agent edge-1" in out.stdout and "when_full=drop" in out.stdout
    assert str(logs / "a.log") in out.stdout
    deadline = time.monotonic() + 10
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = httpx.get(f"{srv.url}/sluiceway/api/v1/pipeline").json()["data"]
        if rows and rows[0]["lines"]["shipped"] == 100:  # type: ignore[index]
            break
        time.sleep(0.1)
    (row,) = rows
    assert row["kind"] == "agent" and row["name"] == "edge-1" and row["stale"] is False
    assert row["queue"]["when_full"] == "drop"  # type: ignore[index]
    assert agent.stop() == 0
