"""The Pipeline page's ledger table: a source that balances, and one whose lines were
never stored nor counted lost nor held — its unexplained count in red."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import orjson
from playwright.sync_api import expect

from sluiceway.model import LEDGER_HEADER, LedgerGroup, encode_ledger
from tests.procs import ServerProcess


def heartbeat(source: str, epoch: str, emitted: int, lost: dict[str, int],
              queue: int = 0) -> dict[str, Any]:
    return {"id": f"ui-ledger-{source}", "kind": "client", "token": secrets.token_hex(8),
            "name": source, "ts": time.time(), "interval_s": 60,
            "queue": {"capacity": 100, "depth": queue, "when_full": "drop"},
            "ledger": [{"in_flight": {"queue": queue},
                        "entries": [{"source": source, "epoch": epoch, "emitted": emitted,
                                     "lost": lost, "lost_ranges": None}]}]}


def test_the_ledger_table_shows_unexplained_lines_in_red(page: Any,
                                                         ui_server: ServerProcess) -> None:
    tenant = {"X-Scope-OrgID": "ui-ledger"}
    with httpx.Client(base_url=ui_server.url, headers=tenant, timeout=10) as http:
        now = time.time_ns()
        body = orjson.dumps({"streams": [{"stream": {"app": "ui-ledger"}, "values": [
            [str(now + i), f"line {i}"] for i in range(40)]}]})
        r = http.post("/loki/api/v1/push", content=body, headers={
            "Content-Type": "application/json",
            LEDGER_HEADER: encode_ledger([LedgerGroup("client/orders/web-1/loki", "e1",
                                                      [(0, 40)])])})
        assert r.status_code == 204, r.text
        for hb in (heartbeat("client/orders/web-1/loki", "e1", 45, {"full": 3}, queue=2),
                   heartbeat("agent-web-2/file:9f2c", "a7", 120, {"queue_full": 5})):
            r = http.post("/sluiceway/api/v1/heartbeat", content=orjson.dumps(hb))
            assert r.status_code == 204, r.text
    page.add_init_script("localStorage.setItem('sluiceway.tenant', 'ui-ledger')")
    page.goto(f"{ui_server.url}/#/pipeline")
    ok = page.locator("[data-testid=ledger-row][data-source='client/orders/web-1/loki']")
    bad = page.locator("[data-testid=ledger-row][data-source='agent-web-2/file:9f2c']")
    expect(ok.locator("[data-testid=unexplained]")).to_have_text("0")
    expect(ok).to_contain_text("40")  # stored
    expect(bad.locator("[data-testid=unexplained]")).to_have_text("115")
    color = bad.locator("[data-testid=unexplained]").evaluate(
        "e => getComputedStyle(e).color")
    assert color == "rgb(255, 107, 97)", color  # red
    assert ok.locator("[data-testid=unexplained]").evaluate(
        "e => getComputedStyle(e).color") != color
    expect(page.locator("[data-testid=ledger-total]")).to_contain_text("115")
