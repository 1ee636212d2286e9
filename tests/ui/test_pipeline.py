"""Pipeline page: a real agent's queue fills while its backend is stopped; synthetic
heartbeats show every status word (block, drop, spill, stale) the page promises."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.procs import REPO, ServerProcess, sluiceway_cmd
from tests.ui._support import stop_quickly

AGENT_YAML = """\
url: {backend}
report_url: {report}
name: {name}
data_dir: {data}
listen: null
timeout: 1s
retry: {{min_backoff: 100ms, max_backoff: 500ms}}
queue: {{capacity: 500, when_full: block}}
batch: {{max_lines: 100, max_wait: 100ms}}
heartbeat_interval: 300ms
inputs:
  - type: demo
    rate: 800
    labels: {{job: ui-pipeline-demo}}
"""


# An app using the in-app client: a small drop queue, heartbeats twice a second.
CLIENT_APP = """\
import sys, time
from sluiceway import client
client.configure(sinks=[client.LokiSink(sys.argv[1], labels={"app": "ui-client-app"})],
                 queue_size=200, when_full="drop", name="ui-test-client",
                 report_url=sys.argv[2], report_interval=0.3, capture_stdlib=False)
log = client.get_logger("orders")
i = 0
while True:
    log.info("order placed", order_id=i)
    i += 1
    time.sleep(0.001)
"""


def card(page: Any, name: str) -> Any:
    return page.locator("[data-testid=reporter]", has=page.locator("h3", has_text=name))


def fill_of(page: Any, name: str) -> float:
    return float(card(page, name).get_attribute("data-fill") or "0")


def test_real_agent_queue_fills_while_backend_is_stopped(
        page: Any, ui_server: ServerProcess, tmp_path: Path) -> None:
    backend = ServerProcess(tmp_path / "backend").start()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(AGENT_YAML.format(backend=backend.url, report=ui_server.url,
                                     name="ui-test-agent", data=tmp_path / "agent-data"))
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed in finally
    agent = subprocess.Popen(sluiceway_cmd("agent", "-c", str(cfg)), cwd=REPO, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        page.goto(f"{ui_server.url}/#/pipeline")
        c = card(page, "ui-test-agent")
        try:
            expect(c).to_have_attribute("data-status", "OK", timeout=15_000)
        except AssertionError:
            raise AssertionError("agent never showed as OK; its log:\n"
                                 + (tmp_path / "agent.log").read_text()) from None
        expect(c.locator(".backend")).to_contain_text("backend ok")
        # A healthy agent's queue hovers near empty (a batch or two in flight).
        deadline = time.monotonic() + 5
        while (before := fill_of(page, "ui-test-agent")) >= 50 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert before < 50, f"queue stays {before}% full with a healthy backend"

        backend.signal(signal.SIGSTOP)  # the backend hangs; the report target stays up
        deadline = time.monotonic() + 20
        while fill_of(page, "ui-test-agent") < 80 and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        after = fill_of(page, "ui-test-agent")
        assert after >= 80, f"queue fill only went {before}% -> {after}% in 20 s"
        # It keeps reporting (not stale), and the card says why the queue is full.
        assert "is-stale" not in (c.get_attribute("class") or "")
        expect(c).to_have_attribute("data-status", "BLOCKING", timeout=5000)
        expect(c.locator(".policy")).to_have_text("when full: block")
        expect(c.locator(".backend")).to_contain_text("backend down", timeout=5000)
        expect(page.locator("[data-testid=pipeline-summary]")).to_contain_text(
            re.compile(r"[1-9]\d* blocking or dropping"))

        backend.signal(signal.SIGCONT)  # it drains again
        expect(c).to_have_attribute("data-status", "OK", timeout=20_000)
    finally:
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()
        stop_quickly(backend)


def test_real_client_drops_show_while_backend_is_stopped(
        page: Any, ui_server: ServerProcess, tmp_path: Path) -> None:
    backend = ServerProcess(tmp_path / "backend").start()
    app = subprocess.Popen([sys.executable, "-c", CLIENT_APP, backend.url, ui_server.url],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page.goto(f"{ui_server.url}/#/pipeline")
        c = card(page, "ui-test-client")
        expect(c).to_have_attribute("data-status", "OK", timeout=15_000)
        expect(c.locator("[data-stat=latency]")).to_have_text(re.compile(r"\d+(\.\d)? (µs|ms)"))
        backend.signal(signal.SIGSTOP)
        expect(c).to_have_attribute("data-status", "DROPPING", timeout=15_000)
        expect(c.locator(".fill-text")).to_have_text("100%")
        expect(c.locator(".policy")).to_have_text("when full: drop")
        expect(c.locator(".stat.alert [data-stat=dropped]")).to_be_visible()
        expect(c.locator(".lost-reasons")).to_contain_text("lost by reason")
    finally:
        app.kill()
        app.wait(10)
        stop_quickly(backend)


def heartbeat(id_: str, name: str, **kw: Any) -> dict[str, Any]:
    hb: dict[str, Any] = {
        "id": id_, "kind": "client", "name": name, "host": "h", "pid": 1, "ts": time.time(),
        "token": f"token-of-{id_}",
        "interval_s": 5.0, "lost_by_reason": {}, "spill_bytes": 0,
        "queue": {"depth": 1, "capacity": 100, "bytes": 10, "max_bytes": 1000,
                  "when_full": "drop", "high_watermark": 5},
        "lines": {"read": 0, "enqueued": 10, "shipped": 10, "dropped": 0, "spilled": 0,
                  "lost": 0},
        "backend": {"ok": True, "last_error": None, "url": "http://x"},
        "latency_us": {"enqueue_p99": 12.5}}
    hb.update(kw)
    return hb


def test_status_words_for_drop_spill_and_stale(page: Any, ui_server: ServerProcess) -> None:
    full = {"depth": 100, "capacity": 100, "bytes": 500, "max_bytes": 1000,
            "high_watermark": 100}
    reports = [
        heartbeat("syn-drop", "syn-dropper", queue={**full, "when_full": "drop"},
                  lines={"read": 0, "enqueued": 900, "shipped": 700, "dropped": 200,
                         "spilled": 0, "lost": 200}, lost_by_reason={"queue_full": 200}),
        heartbeat("syn-spill", "syn-spiller", kind="agent", queue={**full, "when_full": "spill"},
                  spill_bytes=5 << 20),
        heartbeat("syn-stale", "syn-stale", interval_s=0.1),
    ]
    for r in reports:
        assert httpx.post(f"{ui_server.url}/sluiceway/api/v1/heartbeat", json=r).status_code == 204
    page.goto(f"{ui_server.url}/#/pipeline")
    expect(card(page, "syn-dropper")).to_have_attribute("data-status", "DROPPING")
    expect(card(page, "syn-dropper").locator(".lost-reasons")).to_contain_text("queue_full 200")
    expect(card(page, "syn-dropper").locator("[data-stat=latency]")).to_have_text("13 µs")
    expect(card(page, "syn-spiller")).to_have_attribute("data-status", "SPILLING")
    expect(card(page, "syn-spiller").locator("[data-stat=spill_bytes]")).to_have_text("5.0 MiB")
    expect(card(page, "syn-stale")).to_have_attribute("data-status", "STALE")
    expect(card(page, "syn-dropper").locator(".fill-text")).to_have_text("100%")
