"""Explore: run a query, chips, completion, errors, histogram, metric chart."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
from playwright.sync_api import expect

from tests.procs import ServerProcess
from tests.ui._support import explore_url, push, require_metric_queries


def query_of(page: Any) -> str:
    """The query as the URL holds it (the link a user would share)."""
    fragment = page.url.split("#", 1)[1]
    return parse_qs(fragment.split("?", 1)[1])["query"][0]


def test_query_shows_lines_newest_first(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-lines"},
         ["level=info msg=first", "level=info msg=second", 'level=error msg="third one"'])
    page.goto(explore_url(ui_server.url, '{app="ui-lines"}'))
    rows = page.locator(".log-row")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("third one")  # newest first
    expect(rows.nth(2)).to_contain_text("msg=first")
    expect(rows.nth(0)).to_have_class(re.compile(r"\blvl-error\b"))  # level from the line
    # Expanding a line shows its parsed logfmt fields.
    rows.nth(0).locator(".line").click()
    details = page.locator(".log-details")
    expect(details).to_contain_text("logfmt")
    expect(details.locator("tr", has_text="msg")).to_contain_text("third one")
    # "Show context": the lines around this one in its stream, this one marked.
    details.locator("button[data-action=context]").click()
    ctx = details.locator(".ctx-row")
    expect(ctx).to_have_count(3)
    expect(ctx.nth(0)).to_contain_text("msg=first")  # oldest first
    expect(details.locator(".ctx-row.self")).to_contain_text("third one")


def test_field_filters_go_after_the_pipeline(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-fields"},
         ['{"level":"warn","user":"ann"}', '{"level":"info","user":"bob"}'])
    page.goto(explore_url(ui_server.url, '{app="ui-fields"} | json'))
    rows = page.locator(".log-row")
    expect(rows).to_have_count(2)
    # Parsed labels are not stream labels: no chips for them, and no selector matcher either.
    expect(page.locator(".log-row .chip")).to_have_count(0)
    expect(rows.nth(0)).to_have_class(re.compile(r"\blvl-info\b"))  # level from parsed labels
    rows.nth(0).locator(".line").click()
    page.locator(".log-details tr", has=page.locator("th", has_text="user")).filter(
        has_text="parsed").locator("button").click()
    expect(page.locator(".query-input")).to_have_value('{app="ui-fields"} | json | user="bob"')
    expect(rows).to_have_count(1)
    # A field the UI parsed itself brings its parser along.
    page.locator(".query-input").fill('{app="ui-fields"}')
    page.locator(".query-input").press("Enter")
    expect(rows).to_have_count(2)
    rows.nth(1).locator(".line").click()
    page.locator(".log-details tr", has=page.locator("th", has_text="user")).filter(
        has_text="json").locator("button").click()
    expect(page.locator(".query-input")).to_have_value('{app="ui-fields"} | json | user="ann"')
    expect(rows).to_have_count(1)


def test_five_thousand_lines_render(page: Any, ui_server: ServerProcess) -> None:
    now = time.time_ns()
    n = 5000
    lines = [f'level={("info", "warn", "error")[i % 3]} i={i} msg="line number {i}"'
             for i in range(n)]
    push(ui_server.url, {"app": "ui-many"}, lines, [now - (n - i) * 10**8 for i in range(n)])
    page.goto(f"{ui_server.url}/#/explore")
    page.wait_for_selector(".query-input")
    page.goto(explore_url(ui_server.url, '{app="ui-many"}', limit="5000"))
    page.wait_for_selector(f'[data-testid=log-list][data-rendered="{n}"]')
    expect(page.locator(".log-row").first).to_contain_text("line number 4999")


def test_label_chip_adds_a_matcher(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-chip", "level": "info"}, ["all good"])
    push(ui_server.url, {"app": "ui-chip", "level": "error"}, ["it broke"])
    page.goto(explore_url(ui_server.url, '{app="ui-chip"}'))
    expect(page.locator(".log-row")).to_have_count(2)
    page.locator('.log-row .chip[data-name="level"][data-value="error"]').click()
    expect(page.locator(".query-input")).to_have_value('{app="ui-chip", level="error"}')
    expect(page.locator(".log-row")).to_have_count(1)
    expect(page.locator(".log-row")).to_contain_text("it broke")
    assert query_of(page) == '{app="ui-chip", level="error"}'
    # Clicking the other value replaces the matcher instead of adding a second one.
    page.locator('.common-labels .chip[data-name="level"]').click()
    expect(page.locator(".query-input")).to_have_value('{app="ui-chip", level="error"}')


def test_completion_history_and_error_position(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-complete", "zone": "z1"}, ["completed"])
    page.goto(f"{ui_server.url}/#/explore")
    box = page.locator(".query-input")
    box.click()
    box.type("{zo")
    expect(page.locator(".completion li[data-value=zone]")).to_be_visible()
    box.press("Enter")  # accept "zone" -> zone= and the value list opens
    expect(page.locator(".completion li[data-value=z1]")).to_be_visible()
    box.press("Enter")
    expect(box).to_have_value('{zone="z1"')
    box.press("Enter")  # run the unfinished query: the server's parse error, with a caret
    err = page.locator(".query-error")
    expect(err).to_contain_text("parse error at line 1, col 11")
    expect(err.locator(".caret-view")).to_contain_text(" " * 10 + "^")
    box.type("}")
    box.press("Enter")
    expect(err).to_be_hidden()
    expect(page.locator(".log-row")).to_contain_text("completed")
    page.locator("button", has_text="History").click()
    expect(page.locator(".history-list li").first).to_have_text('{zone="z1"}')


def test_label_browser_starts_a_query(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-browse", "team": "blue"}, ["browsed"])
    page.goto(f"{ui_server.url}/#/explore")
    page.locator('[data-testid=label-browser] .chip[data-name="team"]').click()
    blue = page.locator("[data-testid=label-browser] .lb-values .chip", has_text="blue")
    # Values carry their byte volume in the range (from /loki/api/v1/index/volume).
    expect(blue.locator(".lb-bytes")).to_have_text("7 B")
    blue.click()
    expect(page.locator(".query-input")).to_have_value('{team="blue"}')
    expect(page.locator(".log-row")).to_contain_text("browsed")


def test_histogram_counts_and_zooms(page: Any, ui_server: ServerProcess) -> None:
    now = time.time_ns()
    ts = [now - (600 - i * 20) * 10**9 for i in range(30)]  # 30 lines over the last 10 min
    push(ui_server.url, {"app": "ui-hist", "level": "info"}, [f"tick {i}" for i in range(20)],
         ts[:20])
    push(ui_server.url, {"app": "ui-hist", "level": "error"}, [f"boom {i}" for i in range(10)],
         ts[20:])
    page.goto(explore_url(ui_server.url, '{app="ui-hist"}', **{"from": "now-15m"}))
    hist = page.locator("[data-testid=histogram]")
    expect(hist.locator("canvas")).to_be_visible()
    expect(hist).to_have_attribute("data-total", "30")
    expect(hist.locator(".legend-item[data-level=error]")).to_contain_text("error 10")
    expect(hist.locator(".legend-item[data-level=info]")).to_contain_text("info 20")
    # Drag across the plot: the range becomes absolute and is kept in the URL.
    over = hist.locator(".u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.9, y, steps=5)
    page.mouse.up()
    page.wait_for_function("/from=\\d+/.test(location.hash) && /to=\\d+/.test(location.hash)")
    expect(page.locator(".tp-custom")).to_contain_text("→")
    # The counts must be the server's, not a count of the lines that happened to be fetched.
    page.goto(explore_url(ui_server.url, '{app="ui-hist"}', **{"from": "now-15m"}))
    expect(hist).to_have_attribute("data-total", "30")
    source = hist.get_attribute("data-source")
    assert source == "metric", (
        "server feature missing: the histogram's metric query "
        "(sum by (level) (count_over_time(...))) failed, so the UI fell back to counting the "
        f"fetched lines (data-source={source!r})")


def test_metric_query_renders_chart(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-metric", "level": "info"}, ["a", "b", "c"])
    push(ui_server.url, {"app": "ui-metric", "level": "warn"}, ["d"])
    require_metric_queries(ui_server.url)
    page.goto(explore_url(ui_server.url, '{app="ui-metric"}'))
    expect(page.locator(".log-row")).to_have_count(4)
    box = page.locator(".query-input")
    box.fill('sum by (level) (count_over_time({app="ui-metric"}[5m]))')
    box.press("Enter")
    chart = page.locator("[data-testid=metric-chart]")
    expect(chart.locator("canvas")).to_be_visible()
    expect(chart).to_have_attribute("data-series", "2")
    expect(chart.locator(".u-legend")).to_contain_text('{level="info"}')
    expect(chart.locator(".u-legend")).to_contain_text('{level="warn"}')
    expect(page.locator(".results")).to_be_hidden()
    expect(page.locator("[data-testid=histogram]")).to_be_hidden()
    # The query's stats: lines and bytes scanned, blocks read, the server's time.
    info = page.locator("[data-testid=query-info]")
    expect(info).to_contain_text(re.compile(r"4 lines / .* scanned · \d+ blocks? · server \d+ ms"))
    expect(info).to_have_attribute("title", re.compile(r"blocks read: \d+, skipped by filters: 0"))


def test_histogram_splits_by_a_level_field(page: Any, ui_server: ServerProcess) -> None:
    # No level label: the level is a JSON field, and the query has no parser.
    lines = ['{"level":"error","msg":"e1"}', '{"level":"info","msg":"i1"}',
             '{"level":"info","msg":"i2"}']
    push(ui_server.url, {"app": "ui-field-level"}, lines)
    require_metric_queries(ui_server.url)
    page.goto(explore_url(ui_server.url, '{app="ui-field-level"}'))
    hist = page.locator("[data-testid=histogram]")
    expect(hist).to_have_attribute("data-source", "metric")
    expect(hist.locator(".legend-item[data-level=error]")).to_contain_text("error 1")
    expect(hist.locator(".legend-item[data-level=info]")).to_contain_text("info 2")


def test_absolute_range_and_refresh(page: Any, ui_server: ServerProcess) -> None:
    now = time.time_ns()
    push(ui_server.url, {"app": "ui-range"}, ["two hours ago", "just now"],
         [now - 7200 * 10**9, now - 10**9])
    page.goto(explore_url(ui_server.url, '{app="ui-range"}'))
    expect(page.locator(".log-row")).to_have_count(1)  # last hour: only "just now"
    page.locator(".tp-preset[data-range='6h']").click()
    expect(page.locator(".log-row")).to_have_count(2)
    assert "from=now-6h" in page.url
    # Absolute: a window around the old line only.
    page.locator(".tp-custom").click()
    page.locator(".tp-pop input[aria-label=from]").evaluate(
        "(el, ms) => { const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);"
        " el.value = d.toISOString().slice(0, 19); }", (now // 10**6) - 7260_000)
    page.locator(".tp-pop input[aria-label=to]").evaluate(
        "(el, ms) => { const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);"
        " el.value = d.toISOString().slice(0, 19); }", (now // 10**6) - 7140_000)
    page.locator(".tp-pop button[type=submit]").click()
    expect(page.locator(".log-row")).to_have_count(1)
    expect(page.locator(".log-row")).to_contain_text("two hours ago")
    assert re.search(r"from=\d+&to=\d+", page.url)
    # A reload of the same link shows the same window; refresh picks up new lines in it.
    page.reload()
    expect(page.locator(".log-row")).to_contain_text("two hours ago")
    # (another stream: Loki rejects lines an hour older than their stream's newest)
    push(ui_server.url, {"app": "ui-range", "late": "yes"}, ["late arrival"],
         [now - 7200 * 10**9 + 10**9])
    page.locator(".tp-refresh").click()
    expect(page.locator(".log-row")).to_have_count(2)


def test_tenant_field_queries_another_tenant(page: Any, ui_server: ServerProcess) -> None:
    body = {"streams": [{"stream": {"app": "ui-tenant"},
                         "values": [[str(time.time_ns()), "only team-a sees this"]]}]}
    r = httpx.post(f"{ui_server.url}/loki/api/v1/push", json=body,
                   headers={"X-Scope-OrgID": "team-a"})
    assert r.status_code == 204, r.text
    page.goto(explore_url(ui_server.url, '{app="ui-tenant"}'))
    expect(page.locator(".log-list .empty")).to_be_visible()  # the default tenant has none
    page.locator("#tenant").fill("team-a")
    page.locator("#tenant").press("Enter")
    expect(page.locator(".log-row")).to_contain_text("only team-a sees this")


def test_query_info_shows_blocks_skipped_by_filters(page: Any, ui_server: ServerProcess) -> None:
    """After compaction, a rare whole word is looked for in the one block that holds it:
    the query info says how many blocks its filters skipped."""
    now = time.time_ns() - 600 * 10**9
    for part in range(4):  # ~2.4 MB: a few blocks of about 1 MiB once compacted
        lines = [f'{{"msg":"request {part * 5000 + i}","trace":"{(part * 5000 + i) * 7919:016x}"'
                 f',"pad":"{"x" * 60}"}}' + (" qz8nv3" if part == 2 and i == 7 else "")
                 for i in range(5000)]
        push(ui_server.url, {"app": "ui-skip"}, lines,
             [now + (part * 5000 + i) * 5_000_000 for i in range(5000)])
    assert httpx.post(f"{ui_server.url}/flush", timeout=60).status_code < 300
    r = httpx.post(f"{ui_server.url}/sluiceway/api/v1/compact", params={"min_age": "0s"},
                   timeout=300)
    assert r.status_code == 200, r.text
    page.goto(explore_url(ui_server.url, '{app="ui-skip"} |~ "\\\\bqz8nv3\\\\b"'))
    expect(page.locator(".log-row")).to_have_count(1)
    info = page.locator("[data-testid=query-info]")
    expect(info).to_contain_text(re.compile(r"\(\+[1-9]\d* skipped\)"))
    expect(info).to_have_attribute("title", re.compile(r"skipped by filters: [1-9]"))
