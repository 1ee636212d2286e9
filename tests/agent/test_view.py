"""The agent's own pipeline view: clients report to the agent, which keeps their
heartbeats (the server's rules: token, staleness, forgetting) and relays them to the
server, never holding a reporter up while the server does not answer; the agent serves
the Pipeline page and its data on its listen address. Real server, real agent."""

from __future__ import annotations

import http.client
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from sluiceway import client
from tests.agent.conftest import Stack
from tests.procs import ServerProcess

HB = "/sluiceway/api/v1/heartbeat"
PIPELINE = "/sluiceway/api/v1/pipeline"


def config(srv: ServerProcess, tmp: Path, **kw: Any) -> dict[str, Any]:
    (tmp / "logs").mkdir(exist_ok=True)
    return {"url": srv.url, "timeout": "1s", "heartbeat_interval": "300ms",
            "inputs": [{"type": "file", "paths": [str(tmp / "logs" / "*.log")]}], **kw}


def beat(id_: str, token: str, **kw: Any) -> dict[str, Any]:
    return {"id": id_, "kind": "client", "name": id_, "token": token, "ts": time.time(),
            "interval_s": 0.5,
            "queue": {"capacity": 10, "depth": 0, "when_full": "drop"}, **kw}


def rows(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}{PIPELINE}", timeout=5)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def wait_rows(url: str, pred: Any, what: str, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = rows(url)
        if pred(got):
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {got}")


def test_a_client_reporting_to_the_agent_shows_there_and_on_the_server(
        stack: Stack, tmp_path: Path) -> None:
    srv = stack.thread_server()
    agent = stack.agent(config(srv, tmp_path, name="relay-agent"))
    client.configure(sinks=[client.LokiSink(srv.url)], name="via-agent",
                     report_url=agent.url, report_interval=0.2, capture_stdlib=False)
    try:
        here = wait_rows(agent.url, lambda r: len(r) == 2, "the agent and its client")
        assert [(r["kind"], r["name"], r["here"]) for r in here] == [
            ("agent", "relay-agent", True), ("client", "via-agent", False)]
        assert here[0]["view_url"] == f"{agent.url}/"
        assert "token" not in here[1] and here[1]["lost_recent"] == {"5m": 0, "60m": 0}
        # The server gets the client's card through the agent, and the agent's own card
        # with the address of its view (which the server's page links to).
        there = wait_rows(srv.url, lambda r: len(r) == 2, "both cards on the server")
        assert [(r["kind"], r["name"]) for r in there] == [("agent", "relay-agent"),
                                                           ("client", "via-agent")]
        assert there[0]["view_url"] == f"{agent.url}/"
    finally:
        client.shutdown(timeout=0.5)


def test_the_relay_keeps_the_newest_heartbeat_while_the_server_is_stopped(
        stack: Stack, tmp_path: Path) -> None:
    srv = stack.server()
    agent = stack.agent(config(srv, tmp_path))
    assert httpx.post(f"{agent.url}{HB}", json=beat("app-1", "tok", name="before"),
                      timeout=5).status_code == 204
    wait_rows(srv.url, lambda r: any(x["name"] == "before" for x in r), "the first card")
    srv.signal(signal.SIGSTOP)
    try:
        # The agent answers at once although its relay cannot get through: a reporter is
        # never held up by the server, and the view shows the newest state.
        for name in ("during-1", "during-2", "during-3"):
            r = httpx.post(f"{agent.url}{HB}", json=beat("app-1", "tok", name=name), timeout=5)
            assert r.status_code == 204, r.text
        assert [x["name"] for x in rows(agent.url) if x["id"] == "app-1"] == ["during-3"]
    finally:
        srv.signal(signal.SIGCONT)
    wait_rows(srv.url, lambda r: any(x["name"] == "during-3" for x in r),
              "the newest heartbeat relayed once the server answers again")


def raw(agent_url: str, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A request sent as written (no path normalisation, no Content-Length added)."""
    host, port = agent_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_bad_heartbeats_and_paths_get_4xx_with_a_reason(stack: Stack, tmp_path: Path) -> None:
    srv = stack.thread_server()
    agent = stack.agent(config(srv, tmp_path, report_url="off"))
    post = lambda body, **kw: httpx.post(f"{agent.url}{HB}", content=body, timeout=5, **kw)  # noqa: E731
    r = post(b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.text
    hb = beat("x", "t")
    del hb["token"]
    r = post(json.dumps(hb).encode())
    assert r.status_code == 400 and '"token"' in r.text
    assert post(json.dumps(beat("x", "t")).encode()).status_code == 204
    r = post(json.dumps(beat("x", "intruder")).encode())
    assert r.status_code == 409 and "belongs to another process" in r.text
    r = post(json.dumps(beat("big", "t", lost_by_reason={"x" * 70_000: 1})).encode())
    assert r.status_code == 413 and "65536" in r.text
    status, text = raw(agent.url, "POST", HB, b"{}", {"Transfer-Encoding": "chunked"})
    assert status == 411 and b"Content-Length" in text
    assert httpx.post(f"{agent.url}/elsewhere", content=b"{}", timeout=5).status_code == 404
    # Only the UI's files: nothing above its directory.
    assert raw(agent.url, "GET", "/../../pyproject.toml")[0] == 404
    assert raw(agent.url, "GET", "/js/../../../agent/_view.py")[0] == 404
    # With report_url off the view still keeps what reports to it.
    assert [r["id"] for r in rows(agent.url) if r["kind"] == "client"] == ["x"]


def test_the_agent_serves_the_pipeline_page_and_its_files(stack: Stack, tmp_path: Path) -> None:
    srv = stack.thread_server()
    agent = stack.agent(config(srv, tmp_path))
    page = httpx.get(f"{agent.url}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="js/pipeline-main.js"' in page.text
    for path, ctype in (("/js/pipeline-main.js", "javascript"), ("/js/pipeline.js", "javascript"),
                        ("/css/app.css", "text/css"), ("/favicon.svg", "image/svg+xml")):
        r = httpx.get(f"{agent.url}{path}", timeout=5)
        assert r.status_code == 200 and ctype in r.headers["content-type"], (path, r.headers)
    # /status, /metrics and /ready are the agent's as before.
    assert httpx.get(f"{agent.url}/ready", timeout=5).text == "ready\n"


def test_the_view_forgets_a_reporter_after_heartbeat_forget_after(tmp_path: Path) -> None:
    from sluiceway.agent import Agent, AgentConfig

    base = {"url": "http://127.0.0.1:9", "inputs": [{"type": "stdin"}]}
    default = Agent(AgentConfig(**base, data_dir=tmp_path / "a"), listen="")
    assert default.view.cards.forget_after_s == 3600
    agent = Agent(AgentConfig(**base, data_dir=tmp_path / "b", heartbeat_forget_after="10m"),
                  listen="")
    cards = agent.view.cards
    assert cards.forget_after_s == 600
    now = [1_800_000_000.0]
    cards.clock = lambda: now[0]
    assert agent.view.receive(HB, json.dumps(beat("gone", "t")).encode())[0] == 204
    now[0] += 599
    assert [r["id"] for r in cards.snapshot([""])] == ["gone"]
    now[0] += 2
    assert cards.snapshot([""]) == []
