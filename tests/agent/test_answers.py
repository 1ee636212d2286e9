"""A real agent against a real server: the full push URL, partial 400s, and a backend that
answers 404/405 (wrong path, a proxy without the route) — lines kept, DOWN shown, shipped
once it is fixed."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.agent.agentproc import AgentProcess, fetch_lines
from tests.agent.conftest import Stack
from tests.procs import free_port


def file_input(path: Path, job: str) -> dict[str, Any]:
    return {"type": "file", "paths": [str(path)], "start_at": "beginning",
            "labels": {"job": job}, "filename_label": False}


def write_lines(path: Path, tag: str, n: int, long_every: int = 0) -> list[str]:
    lines = [f"{tag} {i:04d} " + ("y" * 400 if long_every and i % long_every == 0 else "ok")
             for i in range(n)]
    path.write_text("".join(line + "\n" for line in lines))
    return lines


def test_the_full_push_url_works_as_promtail_writes_it(stack: Stack, tmp_path: Path) -> None:
    srv = stack.thread_server()
    lines = write_lines(tmp_path / "app.log", "full", 50)
    agent = stack.agent({"url": f"{srv.url}/loki/api/v1/push", "heartbeat_interval": "200ms",
                         "inputs": [file_input(tmp_path / "app.log", "full")]})
    agent.wait_for(lambda s: s["lines"]["shipped"] == 50, what="50 lines shipped")
    st = agent.status()
    assert st["lost_by_reason"] == {} and st["backend"]["state"] == "ok"
    assert fetch_lines(srv, '{job="full"}') == lines
    # heartbeats go to the server's base URL, not below the push path
    rows = httpx.get(f"{srv.url}/sluiceway/api/v1/pipeline").json()["data"]
    assert any(r["kind"] == "agent" for r in rows)


def test_partial_400_counts_only_the_rejected_lines(stack: Stack, tmp_path: Path) -> None:
    cfg = tmp_path / "server.yaml"
    cfg.write_text("limits: {max_line_size: 300}\n")
    srv = stack.thread_server(config=cfg)
    lines = write_lines(tmp_path / "app.log", "part", 40, long_every=5)
    agent = stack.agent({"url": srv.url, "batch": {"max_lines": 10},
                         "inputs": [file_input(tmp_path / "app.log", "part")]})
    st = agent.wait_for(lambda s: s["lines"]["shipped"] + s["lines"]["lost"] == 40,
                        what="40 lines accounted")
    assert st["lost_by_reason"] == {"line_too_long": 8}
    assert st["lines"]["shipped"] == 32 and st["backend"]["state"] == "ok"
    assert fetch_lines(srv, '{job="part"}') == [ln for ln in lines if len(ln) <= 300]


def test_a_wrong_path_shows_down_keeps_every_line_and_a_fixed_config_ships_them(
        stack: Stack, tmp_path: Path) -> None:
    """The real server answers 405 below a path it does not serve: DOWN with the status
    and body, nothing lost (spill); restarted with the right URL, every line arrives."""
    srv = stack.thread_server()
    lines = write_lines(tmp_path / "app.log", "wrong", 30)
    conf = {"inputs": [file_input(tmp_path / "app.log", "wrong")],
            "retry": {"min_backoff": "50ms", "max_backoff": "200ms", "max_retries": 1}}
    agent = stack.agent({"url": f"{srv.url}/nope", **conf})
    st = agent.wait_for(lambda s: s["backend"]["state"] == "down", what="backend down")
    assert st["backend"]["status"] == 405 and not st["backend"]["ok"]
    assert st["backend"]["last_error"].startswith("HTTP 405: ")
    agent.wait_for(lambda s: s["counters"]["send_failures"] >= 4, what="retries")
    st = agent.wait_for(lambda s: s["lines"]["spilled"] == 30, what="lines spilled")
    assert st["lines"]["lost"] == 0 and st["lines"]["shipped"] == 0
    from sluiceway.agent._cli import render_status
    assert "DOWN" in render_status(st)
    assert agent.stop() == 0
    stack.agents.remove(agent)
    fixed = AgentProcess(tmp_path, {"url": srv.url, **conf}).start()
    stack.agents.append(fixed)
    fixed.wait_for(lambda s: s["lines"]["shipped"] == 30, what="spilled lines shipped")
    assert fixed.status()["lines"]["lost"] == 0
    assert fetch_lines(srv, '{job="wrong"}') == lines


class _NoRoute:
    """What a reverse proxy without the route answers: 404 to every POST."""

    def __init__(self, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b"404 page not found"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_404_in_drop_mode_fills_the_queue_then_recovers(stack: Stack, tmp_path: Path) -> None:
    """Drop mode: the lines in the queue are kept while the backend answers 404, new ones
    are dropped as queue_full once it is full; when the route appears, the kept ones ship."""
    port = free_port()
    proxy = _NoRoute(port)
    lines = write_lines(tmp_path / "app.log", "drop", 60)
    try:
        agent = stack.agent({
            "url": f"http://127.0.0.1:{port}", "report_url": "off",
            "queue": {"when_full": "drop", "capacity": 20}, "batch": {"max_lines": 10},
            "retry": {"min_backoff": "50ms", "max_backoff": "200ms"},
            "inputs": [file_input(tmp_path / "app.log", "drop")]})
        st = agent.wait_for(lambda s: s["lines"]["read"] == 60
                            and s["backend"]["state"] == "down", what="all read, down")
        assert st["backend"]["status"] == 404
        assert st["backend"]["last_error"] == "HTTP 404: 404 page not found"
    finally:
        proxy.close()
    srv = stack.thread_server(port=port)  # the route is there now
    st = agent.wait_for(lambda s: s["lines"]["shipped"] + s["lines"]["lost"] == 60
                        and s["backend"]["state"] == "ok", what="every line accounted")
    lost = st["lost_by_reason"]
    assert set(lost) <= {"queue_full"} and st["lines"]["shipped"] >= 20
    got = fetch_lines(srv, '{job="drop"}')
    assert len(got) == st["lines"]["shipped"] and set(got) <= set(lines)
