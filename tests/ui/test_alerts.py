"""Alerts page: a real server whose ruler evaluates every second shows each rule's state,
last evaluation and error, the alerts of a firing rule, and a rule file it could not load."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.monitoring import CaptureServer
from tests.procs import ServerProcess
from tests.ui._support import push, stop_quickly

GROUP = """\
name: checkout
interval: 1s
rules:
  - alert: CheckoutErrors
    expr: sum by (app) (count_over_time({app="ui-alerts"} |= "error" [5m])) > 1
    labels: {severity: page}
    annotations: {summary: '{{ $value }} errors in {{ $labels.app }}'}
  - alert: QuietCheckout
    expr: sum(count_over_time({app="ui-alerts"} |= "never" [5m])) > 0
    for: 10m
  - alert: LogQueryByMistake
    expr: '{app="ui-alerts"}'
  - record: app:errors:count5m
    expr: sum by (app) (count_over_time({app="ui-alerts"} |= "error" [5m]))
"""


@pytest.fixture(scope="module")
def ruler_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ui-alerts")
    am = CaptureServer(200)
    cfg = tmp / "sluiceway.yaml"
    cfg.write_text(f"ruler:\n  evaluation_interval: 1s\n  poll_interval: 1s\n"
                   f"  alertmanager_url: {am.url}\n")
    srv = ServerProcess(tmp / "data", config=cfg).start()
    yield srv
    stop_quickly(srv)
    am.close()


def test_alerts_page_shows_state_evaluation_and_errors(page: Any,
                                                       ruler_server: ServerProcess) -> None:
    url = ruler_server.url
    r = httpx.post(f"{url}/loki/api/v1/rules/shop", content=GROUP,
                   headers={"Content-Type": "application/yaml"})
    assert r.status_code == 202, r.text
    broken = Path(ruler_server.data_dir) / "rules" / "fake" / "broken.yaml"
    broken.write_text("groups:\n  - name: b\n    rules:\n      - alert: B\n        expr: 'sum('\n")
    push(url, {"app": "ui-alerts"}, ["error: card declined", "error: timeout", "ok"],
         [time.time_ns() - 3_000_000_000 + i for i in range(3)])
    page.goto(f"{url}/#/alerts")
    expect(page).to_have_title("Alerts · Sluiceway")
    group = page.locator("[data-testid=rule-group][data-group=checkout]")
    expect(group.locator("h2")).to_have_text("shop / checkout")
    firing = group.locator("[data-testid=rule][data-rule=CheckoutErrors]")
    expect(firing).to_have_attribute("data-state", "firing", timeout=20_000)
    expect(group.locator("[data-testid=alert]")).to_contain_text('app="ui-alerts"')
    expect(group.locator("[data-testid=alert]")).to_contain_text("2 errors in ui-alerts")
    expect(group.locator("[data-rule=QuietCheckout]")).to_have_attribute("data-state", "inactive")
    expect(group.locator("[data-rule=QuietCheckout]")).to_contain_text("for 10m")
    bad = group.locator("[data-rule=LogQueryByMistake]")
    expect(bad).to_have_attribute("data-health", "err")
    expect(bad.locator("[data-testid=rule-error]")).to_contain_text("instant query")
    rec = group.locator("[data-rule='app:errors:count5m']")
    expect(rec).to_have_attribute("data-state", "recording")
    expect(rec).to_contain_text(re.compile(r"(just now|\ds ago)"))
    summary = page.locator("[data-testid=alerts-summary]")
    expect(summary).to_contain_text("1 firing")
    expect(page.locator("[data-testid=errors-pill]")).to_contain_text(
        "1 failing rules, 1 files not loaded")
    expect(page.locator("[data-testid=load-errors]")).to_contain_text("broken.yaml")
    expect(page.locator("[data-testid=alertmanager]")).to_contain_text(
        re.compile(r"Alertmanager ok: [1-9]\d* sent"))
    # The rule's query opens in Explore.
    group.get_by_role("link", name="explore").first.click()
    expect(page).to_have_url(re.compile(r"#/explore\?query=%28sum\+by\+%28app%29"))
