"""The pipeline view that survives the outage it exists for: the agent serves the Pipeline
page on its own listen address (linked from the server's page), and it loads and shows the
agent and its clients while the server is SIGSTOPped. Cards come worst first, stale
reporters share one collapsed row, and lost lines show by window beside the total."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.agent.agentproc import AgentProcess
from tests.procs import REPO, ServerProcess
from tests.ui._support import stop_quickly
from tests.ui.test_pipeline import card, heartbeat

# An app using the in-app client: ships to the server, reports to the agent.
CLIENT_APP = """\
import sys, time
from sluiceway import client
client.configure(sinks=[client.LokiSink(sys.argv[1], labels={"app": "view-client"})],
                 queue_size=200, when_full="drop", name="view-client",
                 report_url=sys.argv[2], report_interval=0.3, capture_stdlib=False)
log = client.get_logger("orders")
i = 0
while True:
    log.info("order placed", order_id=i)
    i += 1
    time.sleep(0.002)
"""


@pytest.fixture
def outage_stack(tmp_path: Path) -> Iterator[tuple[ServerProcess, AgentProcess]]:
    """A server, an agent shipping and reporting to it, and a client reporting to the
    agent; the server is resumed (SIGCONT) before anything is stopped."""
    srv = ServerProcess(tmp_path / "data").start()
    (tmp_path / "logs").mkdir()
    agent = AgentProcess(tmp_path, {
        "url": srv.url, "name": "view-agent", "timeout": "1s", "heartbeat_interval": "300ms",
        "retry": {"min_backoff": "100ms", "max_backoff": "500ms"},
        "inputs": [{"type": "demo", "rate": 200, "labels": {"job": "view-demo"}}]})
    app: subprocess.Popen[bytes] | None = None
    try:
        agent.start()
        app = subprocess.Popen([sys.executable, "-c", CLIENT_APP, srv.url, agent.url], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield srv, agent
    finally:
        srv.signal(signal.SIGCONT)  # never leave the server stopped
        if app is not None:
            app.kill()
            app.wait(10)
        agent.stop(10)
        stop_quickly(srv)


def wait_reporting(url: str, names: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        rows = httpx.get(f"{url}/sluiceway/api/v1/pipeline", timeout=5).json()["data"]
        seen = {r["name"] for r in rows if not r["stale"]}
        if names <= seen:
            return
        time.sleep(0.1)
    raise AssertionError(f"{names} never all reported at {url} (saw {seen})")


def test_the_agents_own_view_loads_while_the_server_is_stopped(
        page: Any, outage_stack: tuple[ServerProcess, AgentProcess]) -> None:
    srv, agent = outage_stack
    wait_reporting(agent.url, {"view-agent", "view-client"})
    wait_reporting(srv.url, {"view-agent", "view-client"})  # relayed by the agent
    # The server's page links the agent's card to the agent's own view.
    page.goto(f"{srv.url}/#/pipeline")
    link = card(page, "view-agent").locator("[data-testid=view-link]")
    expect(link).to_have_attribute("href", f"{agent.url}/")
    with page.context.expect_page() as opened:
        link.click()
    view = opened.value
    expect(card(view, "view-client")).to_have_attribute("data-status", "OK", timeout=15_000)

    srv.signal(signal.SIGSTOP)
    # A fresh load of the agent's page while the server is stopped: the page and its
    # data come from the agent alone.
    view.goto(f"{agent.url}/")
    expect(view.locator(".pipeline")).to_have_attribute("data-source", "agent")
    expect(view.locator("h1")).to_have_text("Pipeline · agent view-agent")
    expect(card(view, "view-agent")).to_be_visible()
    # The client's queue fills and drops with its backend stopped; the agent's backend
    # goes down. The view shows both as they happen.
    expect(card(view, "view-client")).to_have_attribute("data-status", "DROPPING",
                                                       timeout=20_000)
    expect(card(view, "view-agent").locator(".backend")).to_contain_text("backend down",
                                                                        timeout=20_000)
    expect(view.locator("[data-testid=updated]")).to_contain_text("updated")
    expect(view.locator("[data-testid=main-ui-link]")).to_have_attribute("href", srv.url)
    # The agent's own card is not linked to itself.
    expect(card(view, "view-agent").locator("[data-testid=view-link]")).to_be_hidden()
    view.close()


ORDER_TENANT = "order-test"


def _post(url: str, hb: dict[str, Any], tenant: str) -> None:
    r = httpx.post(f"{url}/sluiceway/api/v1/heartbeat", json=hb,
                   headers={"X-Scope-OrgID": tenant}, timeout=5)
    assert r.status_code == 204, r.text


def _as_tenant(page: Any, tenant: str) -> None:
    page.add_init_script(f"localStorage.setItem('sluiceway.tenant', {tenant!r})")


def order_of(page: Any) -> list[str]:
    out: list[str] = page.locator(".cards > *").evaluate_all(
        "els => els.filter(e => !e.hidden).map(e => e.dataset.testid === 'stale-row' ? "
        "'(stale)' : e.querySelector('h3').textContent)")
    return out


def test_cards_come_worst_first_with_the_stale_in_one_row(page: Any,
                                                          ui_server: ServerProcess) -> None:
    full = {"depth": 100, "capacity": 100, "bytes": 500, "max_bytes": 1000,
            "high_watermark": 100}
    reports = [
        heartbeat("o-ok", "ord-a-ok"),
        heartbeat("o-spill", "ord-b-spill", queue={**full, "when_full": "spill"},
                  spill_bytes=1 << 20),
        heartbeat("o-down", "ord-c-down", backend={"ok": False, "state": "retrying",
                                                  "last_error": "connection refused",
                                                  "url": "http://x"}),
        heartbeat("o-drop", "ord-d-drop", queue={**full, "when_full": "drop"}),
        heartbeat("o-block", "ord-e-block", queue={**full, "when_full": "block"}),
        heartbeat("o-ok2", "ord-f-ok"),
        heartbeat("o-gone", "ord-g-gone", interval_s=0.1, queue={**full, "when_full": "drop"},
                  lines={"read": 0, "enqueued": 0, "shipped": 0, "dropped": 7, "spilled": 0,
                         "lost": 7}),
        heartbeat("o-gone2", "ord-h-gone", interval_s=0.1),
    ]
    for r in reports:
        _post(ui_server.url, r, ORDER_TENANT)
    _as_tenant(page, ORDER_TENANT)
    page.goto(f"{ui_server.url}/#/pipeline")
    expect(page.locator("[data-testid=stale-row]")).to_be_visible()
    expected = ["ord-d-drop", "ord-e-block", "ord-c-down", "ord-b-spill", "(stale)",
                "ord-a-ok", "ord-f-ok"]
    deadline = time.monotonic() + 10
    while (got := order_of(page)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert got == expected
    # The stale reporters: one collapsed row, each listed with what it was doing.
    row = page.locator("[data-testid=stale-row]")
    expect(row.locator("summary")).to_contain_text("2 stale reporters")
    expect(row.locator("summary")).to_contain_text("forgotten 1 h after its last heartbeat")
    expect(row.locator("[data-testid=stale-reporter]").first).to_be_hidden()  # collapsed
    row.locator("summary").click()
    gone = row.locator("[data-testid=stale-reporter]", has_text="ord-g-gone")
    expect(gone).to_contain_text("was DROPPING")
    expect(gone).to_contain_text("7 lines lost")
    expect(row.locator("[data-testid=stale-reporter]")).to_have_count(2)
    # A card that turns bad moves up at the next poll; the open row stays open.
    _post(ui_server.url, heartbeat("o-ok", "ord-a-ok", queue={**full, "when_full": "drop"}),
          ORDER_TENANT)
    expected = ["ord-a-ok", "ord-d-drop", "ord-e-block", "ord-c-down", "ord-b-spill",
                "(stale)", "ord-f-ok"]
    deadline = time.monotonic() + 10
    while (got := order_of(page)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert got == expected
    expect(gone).to_be_visible()


def test_lost_lines_show_for_the_last_5_and_60_minutes_beside_the_total(
        page: Any, ui_server: ServerProcess) -> None:
    tenant = "lost-window-test"

    def lines(lost: int) -> dict[str, int]:
        return {"read": 0, "enqueued": 0, "shipped": 0, "dropped": lost, "spilled": 0,
                "lost": lost}

    _post(ui_server.url, heartbeat("lw", "lost-window", lines=lines(100), interval_s=60),
          tenant)
    _post(ui_server.url, heartbeat("lw", "lost-window", lines=lines(150), interval_s=60),
          tenant)
    _as_tenant(page, tenant)
    page.goto(f"{ui_server.url}/#/pipeline")
    w = card(page, "lost-window").locator("[data-testid=lost-window]")
    # 100 were lost before the server first heard of it: in the total, in no window.
    expect(w).to_have_text("50 / 50 in the last 5 / 60 min · 150 since it started")
    expect(w).to_have_class("lost-window alert")
