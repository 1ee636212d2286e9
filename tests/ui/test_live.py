"""Live tail: a line pushed after the tail starts shows up within 2 s; pause holds lines."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.procs import ServerProcess
from tests.ui._support import explore_url, push


def wait_live(page: Any) -> None:
    status = page.locator("[data-testid=tail-status]")
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        state = status.get_attribute("data-state")
        if state == "live":
            return
        if state == "error":
            pytest.fail("server feature missing: the /loki/api/v1/tail websocket "
                        f"(the UI says: {status.inner_text()})")
        page.wait_for_timeout(50)
    pytest.fail(f"live tail did not connect in 8 s (status: {status.inner_text()!r})")


def test_live_tail_shows_new_line_within_2s(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-tail"}, ["before the tail"])
    page.goto(explore_url(ui_server.url, '{app="ui-tail"}'))
    expect(page.locator(".log-row")).to_have_count(1)
    page.locator("[data-testid=live-toggle]").click()
    wait_live(page)

    t0 = time.monotonic()
    push(ui_server.url, {"app": "ui-tail"}, ["fresh line ✓ 1"], [time.time_ns()])
    row = page.locator(".log-row", has_text="fresh line ✓ 1")
    expect(row).to_be_visible(timeout=2000)
    assert time.monotonic() - t0 <= 2.0
    expect(page.locator(".log-row").first).to_contain_text("fresh line ✓ 1")  # newest on top
    expect(page.locator("[data-testid=tail-rate]")).to_contain_text("lines/s")

    # Paused: lines are held, not shown; resuming shows them.
    page.locator(".live button", has_text="Pause").click()
    push(ui_server.url, {"app": "ui-tail"}, ["held while paused"], [time.time_ns()])
    expect(page.locator("[data-testid=tail-rate]")).to_contain_text("1 held", timeout=3000)
    expect(page.locator(".log-row", has_text="held while paused")).to_have_count(0)
    page.locator(".live button", has_text="Resume").click()
    expect(page.locator(".log-row", has_text="held while paused")).to_be_visible()

    page.locator("[data-testid=live-toggle]").click()  # stop: back to a normal query
    expect(page.locator("[data-testid=tail-status]")).to_have_attribute("data-state", "off")


def test_live_tail_keeps_every_line_of_a_burst(page: Any, ui_server: ServerProcess) -> None:
    page.goto(explore_url(ui_server.url, '{app="ui-burst"}'))
    page.locator("[data-testid=live-toggle]").click()
    wait_live(page)
    now = time.time_ns()
    push(ui_server.url, {"app": "ui-burst"}, [f"burst {i}" for i in range(300)],
         [now + i for i in range(300)])
    rows = page.locator(".log-row")
    try:
        expect(rows).to_have_count(300, timeout=3000)
    except AssertionError:
        shown = rows.count()
        rate = page.locator("[data-testid=tail-rate]").inner_text()
        raise AssertionError(
            f"a burst of 300 lines reached the tail as {shown} ({rate!r}). Loki sends every "
            "line (in frames of at most 100 entries) and reports what it cannot send in "
            "dropped_entries; `limit` bounds only the history") from None
    expect(rows.first).to_contain_text("burst 299")
