"""Explore's view of the lines: prettified JSON, deduplication (Grafana's exact, numbers and
signature modes), oldest or newest first, UTC or local time, download of the shown lines,
a copied link to one line, and live mode kept in the URL (a link opened while live opens
its own view)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import expect

from tests.procs import ServerProcess
from tests.ui._support import explore_url, push
from tests.ui.test_live import wait_live

KOLKATA = timezone(timedelta(hours=5, minutes=30))  # no daylight saving time


def url_params(page: Any) -> dict[str, str]:
    fragment = page.url.split("#", 1)[1]
    return {k: v[0] for k, v in parse_qs(fragment.split("?", 1)[1]).items()}


@pytest.fixture
def kolkata(browser: Any) -> Iterator[Any]:
    """A page whose browser lives in India (UTC+05:30), so local time is not UTC, and
    that may use the clipboard."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="Asia/Kolkata",
                              permissions=["clipboard-read", "clipboard-write"])
    ctx.set_default_timeout(10_000)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def lines_of(page: Any) -> list[str]:
    out: list[str] = page.locator(".log-row .line").all_text_contents()
    return out


def test_json_lines_are_prettified_on_demand(page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-pretty"},
         ['{"level":"info","user":"ann","n":3,"ok":true,"tags":["a","b"]}', "a plain line {x}"])
    page.goto(explore_url(ui_server.url, '{app="ui-pretty"}'))
    rows = page.locator(".log-row")
    expect(rows).to_have_count(2)
    json_row = rows.nth(1)
    assert json_row.locator(".line").text_content() == (
        '{"level":"info","user":"ann","n":3,"ok":true,"tags":["a","b"]}')
    page.locator("[data-testid=pretty-json]").check()
    expect(json_row.locator(".line.json")).to_be_visible()
    assert json_row.locator(".line").text_content() == json.dumps(
        {"level": "info", "user": "ann", "n": 3, "ok": True, "tags": ["a", "b"]}, indent=2)
    expect(json_row.locator(".j-key", has_text='"user"')).to_be_visible()
    expect(json_row.locator(".j-number")).to_have_text("3")
    expect(rows.nth(0).locator(".line")).to_have_text("a plain line {x}")  # not JSON: as it is
    expect(rows.nth(0).locator(".line.json")).to_have_count(0)
    # A preference of this browser: kept on reload.
    page.reload()
    expect(page.locator("[data-testid=pretty-json]")).to_be_checked()
    expect(page.locator(".log-row .line.json")).to_have_count(1)


DEDUP_LINES = [  # oldest first
    "GET /x took 12ms",
    "GET /x took 15ms",
    "GET /x took 15ms",
    "user ann logged in",
    "user bob logged in",
    "2026-01-01T10:00:00.123Z tick",
    "2026-01-01T10:00:05.456Z tick",
]


@pytest.mark.parametrize(("mode", "shown"), [
    ("none", [(DEDUP_LINES[i], 0) for i in (6, 5, 4, 3, 2, 1, 0)]),
    # exact: the same line but for ISO timestamps in it
    ("exact", [(DEDUP_LINES[6], 1), (DEDUP_LINES[4], 0), (DEDUP_LINES[3], 0),
               (DEDUP_LINES[2], 1), (DEDUP_LINES[0], 0)]),
    # numbers: the same line but for its digits
    ("numbers", [(DEDUP_LINES[6], 1), (DEDUP_LINES[4], 0), (DEDUP_LINES[3], 0),
                 (DEDUP_LINES[2], 2)]),
    # signature: the same punctuation and spacing
    ("signature", [(DEDUP_LINES[6], 1), (DEDUP_LINES[4], 1), (DEDUP_LINES[2], 2)]),
])
def test_dedup_folds_consecutive_duplicates(page: Any, ui_server: ServerProcess, mode: str,
                                            shown: list[tuple[str, int]]) -> None:
    app = f"ui-dedup-{mode}"
    push(ui_server.url, {"app": app}, DEDUP_LINES)
    page.goto(explore_url(ui_server.url, f'{{app="{app}"}}'))
    expect(page.locator(".log-row")).to_have_count(7)
    page.locator("[data-testid=dedup]").select_option(mode)
    rows = page.locator(".log-row")
    expect(rows).to_have_count(len(shown))
    def folded(r: Any) -> int:  # "3×": the row and the two it hides
        return int((r.locator(".dups").text_content() or "")[:-1]) - 1 \
            if r.locator(".dups").count() else 0
    got = [(r.locator(".line").text_content(), folded(r)) for r in rows.all()]
    assert got == shown
    if mode != "none":
        assert url_params(page)["dedup"] == mode
        expect(page.locator("[data-testid=results-stats]")).to_contain_text(
            f"{len(shown)} shown, {7 - len(shown)} duplicate")
        # The mode is part of the link: opening it again folds the same way.
        page.reload()
        expect(page.locator("[data-testid=dedup]")).to_have_value(mode)
        expect(page.locator(".log-row")).to_have_count(len(shown))
    else:
        assert "dedup" not in url_params(page)


def test_oldest_first_asks_for_the_start_of_the_range(page: Any,
                                                      ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-order"}, [f"order line {i}" for i in range(5)])
    page.goto(explore_url(ui_server.url, '{app="ui-order"}', limit="2"))
    expect(page.locator(".log-row")).to_have_count(2)
    assert lines_of(page) == ["order line 4", "order line 3"]
    order = page.locator("[data-testid=order]")
    expect(order).to_have_text("Newest first")
    order.click()
    expect(order).to_have_text("Oldest first")
    # The two oldest lines of the range (a forward query), oldest on top.
    expect(page.locator(".log-row").first).to_have_text(re.compile("order line 0"))
    assert lines_of(page) == ["order line 0", "order line 1"]
    assert url_params(page)["order"] == "oldest"
    page.reload()
    expect(page.locator(".log-row").first).to_have_text(re.compile("order line 0"))
    page.go_back()  # the order change was a step in the history
    expect(page.locator(".log-row").first).to_have_text(re.compile("order line 4"))
    expect(order).to_have_text("Newest first")


def _fmt(ts_ns: int, tz: timezone) -> str:
    d = datetime.fromtimestamp(ts_ns // 10**9, tz)
    return d.strftime("%Y-%m-%d %H:%M:%S") + f".{ts_ns // 10**6 % 1000:03d}"


def _rfc3339(ts_ns: int, tz: timezone) -> str:
    d = datetime.fromtimestamp(ts_ns // 10**9, tz)
    off = "Z" if tz is UTC else d.strftime("%z")[:3] + ":" + d.strftime("%z")[3:]
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_ns % 10**9:09d}" + off


def test_times_in_utc_or_local_time(kolkata: Any, ui_server: ServerProcess) -> None:
    page = kolkata
    ts = (time.time_ns() // 10**9 - 30) * 10**9 + 123_456_789
    push(ui_server.url, {"app": "ui-tz"}, ["what time is it"], [ts])
    page.goto(explore_url(ui_server.url, '{app="ui-tz"}'))
    when = page.locator(".log-row time")
    tz = page.locator("[data-testid=tz]")
    expect(tz).to_have_text("Local time")
    expect(when).to_have_text(_fmt(ts, KOLKATA))
    assert when.get_attribute("title") == _rfc3339(ts, UTC)  # the other zone, in ns
    tz.click()
    expect(tz).to_have_text("UTC")
    expect(when).to_have_text(_fmt(ts, UTC))
    assert when.get_attribute("title") == _rfc3339(ts, KOLKATA)
    page.reload()  # a preference of this browser
    expect(page.locator(".log-row time")).to_have_text(_fmt(ts, UTC))


def test_download_the_shown_lines_as_text_and_json(kolkata: Any, ui_server: ServerProcess,
                                                   tmp_path: Path) -> None:
    page = kolkata
    now = time.time_ns()
    ts = [now - 3_000_000_000 + i * 1000 for i in range(4)]
    lines = ["took 5ms", "took 7ms", 'level=error msg="it broke"', "done"]
    push(ui_server.url, {"app": "ui-dl", "env": "test"}, lines, ts)
    page.goto(explore_url(ui_server.url, '{app="ui-dl"}', dedup="numbers"))
    expect(page.locator(".log-row")).to_have_count(3)  # "took 7ms" folds "took 5ms"

    with page.expect_download() as dl:
        page.locator("[data-testid=download-txt]").click()
    path = tmp_path / "lines.txt"
    dl.value.save_as(path)
    assert re.fullmatch(r"sluiceway-logs-\d{8}-\d{6}\.txt", dl.value.suggested_filename)
    labels = '{app="ui-dl", env="test"}'
    assert path.read_text() == "".join(f"{_rfc3339(t, KOLKATA)}\t{labels}\t{line}{extra}\n"
                                       for t, line, extra in [(ts[3], lines[3], ""),
                                                              (ts[2], lines[2], ""),
                                                              (ts[1], lines[1],
                                                               "\t(+1 duplicates)")])
    page.locator("[data-testid=tz]").click()  # UTC from now on
    with page.expect_download() as dl:
        page.locator("[data-testid=download-json]").click()
    assert dl.value.suggested_filename.endswith(".json")
    path = tmp_path / "lines.json"
    dl.value.save_as(path)
    got = json.loads(path.read_text())
    assert [(g["timestamp"], g["time"], g["labels"], g["line"], g.get("duplicates"))
            for g in got] == [
        (str(ts[3]), _rfc3339(ts[3], UTC), {"app": "ui-dl", "env": "test"}, lines[3],
         None),
        (str(ts[2]), _rfc3339(ts[2], UTC), {"app": "ui-dl", "env": "test"}, lines[2],
         None),
        (str(ts[1]), _rfc3339(ts[1], UTC), {"app": "ui-dl", "env": "test"}, lines[1],
         1)]
    # The server's own view of each line comes along (its detected level).
    assert got[1]["structuredMetadata"] == {"detected_level": "error"}


def test_a_copied_link_opens_the_view_at_that_line(kolkata: Any,
                                                    ui_server: ServerProcess) -> None:
    page = kolkata
    push(ui_server.url, {"app": "ui-link"}, [f"link line {i:02d}" for i in range(60)])
    page.goto(explore_url(ui_server.url, '{app="ui-link"}'))
    expect(page.locator(".log-row")).to_have_count(60)
    target = page.locator(".log-row", has_text="link line 17")
    target.locator(".line").click()
    page.locator(".log-details button[data-action=copy-link]").click()
    expect(page.locator(".log-details button[data-action=copy-link]")).to_have_text("Link copied")
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == page.locator("[data-testid=line-link]").input_value()
    params = parse_qs(link.split("#", 1)[1].split("?", 1)[1])
    assert re.fullmatch(r"\d+-[0-9a-z]+", params["line"][0])  # its time and a hash
    assert re.fullmatch(r"\d+", params["from"][0]) and re.fullmatch(r"\d+", params["to"][0])
    # Lines pushed later do not move the link's view: its range is absolute.
    push(ui_server.url, {"app": "ui-link"}, ["a later line"])
    other = page.context.new_page()
    other.goto(link)
    linked = other.locator(".log-row.linked")
    expect(linked).to_have_count(1)
    expect(linked).to_contain_text("link line 17")
    expect(linked).to_have_class(re.compile(r"\bopen\b"))  # with its fields open
    expect(other.locator(".log-row.linked + .log-details")).to_have_count(1)
    expect(linked).to_be_in_viewport()
    expect(other.locator(".log-row", has_text="a later line")).to_have_count(0)
    other.close()


def test_live_mode_is_in_the_url_and_a_link_opened_while_live_shows_its_view(
        page: Any, ui_server: ServerProcess) -> None:
    push(ui_server.url, {"app": "ui-livelink-b"}, ["b was here"])
    page.goto(explore_url(ui_server.url, '{app="ui-livelink-a"}'))
    page.locator("[data-testid=live-toggle]").click()
    wait_live(page)
    assert url_params(page)["live"] == "1"
    push(ui_server.url, {"app": "ui-livelink-a"}, ["a live line"], [time.time_ns()])
    expect(page.locator(".log-row", has_text="a live line")).to_be_visible()

    # A live row's link: not live, around that line.
    page.locator(".log-row", has_text="a live line").locator(".line").click()
    page.locator(".log-details button[data-action=copy-link]").click()
    line_link = page.locator("[data-testid=line-link]").input_value()
    assert "live=" not in line_link and "line=" in line_link

    # Another link, opened in this tab while live: its view, not the tail.
    now_ms = time.time_ns() // 10**6
    page.goto(explore_url(ui_server.url, '{app="ui-livelink-b"}', **{
        "from": str(now_ms - 600_000), "to": str(now_ms + 60_000)}))
    expect(page.locator("[data-testid=tail-status]")).to_have_attribute("data-state", "off")
    expect(page.locator(".log-row")).to_have_count(1)
    expect(page.locator(".log-row")).to_contain_text("b was here")
    assert "live" not in url_params(page)
    expect(page.locator(".query-input")).to_have_value('{app="ui-livelink-b"}')

    # A live link opens live; the line link copied from the tail opens at that line.
    page.goto(explore_url(ui_server.url, '{app="ui-livelink-a"}', live="1"))
    wait_live(page)
    page.goto(line_link)
    expect(page.locator("[data-testid=tail-status]")).to_have_attribute("data-state", "off")
    expect(page.locator(".log-row.linked")).to_contain_text("a live line")
    # Stopping live by hand leaves the URL without it.
    page.locator("[data-testid=live-toggle]").click()
    wait_live(page)
    assert url_params(page)["live"] == "1"
    page.locator("[data-testid=live-toggle]").click()
    expect(page.locator("[data-testid=tail-status]")).to_have_attribute("data-state", "off")
    assert "live" not in url_params(page)
