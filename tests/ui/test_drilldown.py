"""Explore's Drilldown parts: the fields sidebar (detected fields, value spread over the
range), the patterns tab, and level colours from the server's `detected_level`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.inproc import ThreadServer, wait_for
from tests.procs import ServerProcess
from tests.ui._support import explore_url, push


def test_fields_sidebar_spreads_values_and_filters(page: Any, ui_server: ServerProcess) -> None:
    now = time.time_ns()
    body = {"streams": [{"stream": {"app": "ui-side"}, "values": [
        [str(now - 3_000_000_000), '{"method":"GET","path":"/a"}', {"trace_id": "t1"}],
        [str(now - 2_000_000_000), '{"method":"GET","path":"/b"}'],
        [str(now - 1_000_000_000), '{"method":"POST","path":"/a"}'],
    ]}]}
    assert httpx.post(f"{ui_server.url}/loki/api/v1/push", json=body).status_code == 204
    page.goto(explore_url(ui_server.url, '{app="ui-side"}'))
    side = page.locator("[data-testid=fields-sidebar]")
    # The level first, then structured metadata, then the JSON fields.
    expect(side.locator(".field-row .fname")).to_have_text(
        ["detected_level", "trace_id", "method", "path"])
    expect(side.locator('.field-row[data-field="method"]')).to_have_attribute("data-kind", "json")
    side.locator('.field-name[data-field="method"]').click()
    values = side.locator('.field-row[data-field="method"] .value-row')
    expect(values).to_have_count(2)
    expect(values.nth(0)).to_contain_text("GET")
    expect(values.nth(0)).to_contain_text("2 · 67%")  # counted by the server, over the range
    expect(values.nth(1)).to_contain_text("1 · 33%")
    values.nth(0).click()
    expect(page.locator(".query-input")).to_have_value('{app="ui-side"} | json | method="GET"')
    expect(page.locator(".log-row")).to_have_count(2)
    # Metadata needs no parser; Alt-click excludes.
    side.locator('.field-name[data-field="trace_id"]').click()
    side.locator('.field-row[data-field="trace_id"] .value-row', has_text="t1").click(
        modifiers=["Alt"])
    expect(page.locator(".query-input")).to_have_value(
        '{app="ui-side"} | json | method="GET" | trace_id!="t1"')
    expect(page.locator(".log-row")).to_have_count(1)


def test_rows_are_coloured_by_the_servers_detected_level(page: Any,
                                                         ui_server: ServerProcess) -> None:
    # Lower-case words the page's own guess would not take: the colour is the server's.
    push(ui_server.url, {"app": "ui-level"}, ["request failed with error code 7",
                                              "disk almost full: warning issued",
                                              '{"msg":"ok","severity":"debug"}'])
    page.goto(explore_url(ui_server.url, '{app="ui-level"}'))
    rows = page.locator(".log-row")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_have_class(re.compile(r"\blvl-debug\b"))
    expect(rows.nth(1)).to_have_class(re.compile(r"\blvl-warn\b"))
    expect(rows.nth(2)).to_have_class(re.compile(r"\blvl-error\b"))
    hist = page.locator("[data-testid=histogram]")
    expect(hist.locator(".legend-item[data-level=error]")).to_contain_text("error 1")
    expect(hist.locator(".legend-item[data-level=warn]")).to_contain_text("warn 1")
    # One field list per line: each name once, detected_level among the metadata.
    rows.nth(0).locator(".line").click()
    details = page.locator(".log-details")
    expect(details.locator('tr[data-kind="metadata"] th')).to_have_text(["detected_level"])
    expect(details.locator("th", has_text="severity")).to_have_count(1)


def _patterns_ready(url: str, app: str) -> bool:
    r = httpx.get(f"{url}/loki/api/v1/patterns", params={"query": f'{{app="{app}"}}'})
    return r.status_code == 200 and len(r.json()["data"]) == 2


@pytest.fixture(scope="module")
def pattern_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """A server with the pattern ingester on, its miner in a thread of this process: a real
    server's miner process runs at the scheduler's idle priority and, with every core busy
    (a loaded machine, pytest-xdist), may not run for minutes."""
    data: Path = tmp_path_factory.mktemp("ui-patterns") / "data"
    srv = ThreadServer(data, overrides={"pattern_ingester.enabled": True}).start()
    yield srv
    srv.stop()


def test_patterns_tab_lists_and_filters(page: Any, pattern_server: ThreadServer) -> None:
    ui_server = pattern_server
    now = time.time_ns()
    lines = [f"INFO user {1000 + i} logged in from 10.0.0.{i} in {i}ms" for i in range(40)]
    lines += [f"ERROR payment pay-{i} failed: card declined" for i in range(32)]
    push(ui_server.url, {"app": "ui-pat"}, lines,
         [now - (600 - i) * 10**9 for i in range(len(lines))])
    wait_for(lambda: _patterns_ready(ui_server.url, "ui-pat"), "the lines to be mined")
    page.goto(explore_url(ui_server.url, '{app="ui-pat"} |= "e"', tab="patterns"))
    plist = page.locator("[data-testid=patterns-list]")
    expect(plist).to_have_attribute("data-state", "done")
    rows = plist.locator(".pattern-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-level", "info")
    expect(rows.nth(0).locator(".ptext")).to_have_text("INFO user <_> logged in from <_> in <_>")
    expect(rows.nth(0).locator(".pcount")).to_have_text("40")
    expect(rows.nth(1)).to_have_attribute("data-level", "error")
    expect(page.locator(".log-list")).to_be_hidden()
    rows.nth(1).locator("button[data-action=include]").click()
    expect(page.locator(".query-input")).to_have_value(
        '{app="ui-pat"} |= "e" |> "ERROR payment <_> failed: card declined"')
    expect(page.locator(".log-row")).to_have_count(32)
    assert "tab=" not in page.url  # back on the lines
