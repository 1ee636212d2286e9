"""Heartbeat cards: at most 64 KiB (413), kept per (tenant, id), owned by the process whose
token made them (409 for another token until the card is stale), at most 1,000 per tenant
(a stale card makes room, else 429); `/pipeline` shows the caller's tenant only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sluiceway import client
from sluiceway.agent import Agent, AgentConfig
from sluiceway.model import Heartbeat
from tests.inproc import CountingBody, InProcessServer
from tests.procs import ServerProcess

HB = "/sluiceway/api/v1/heartbeat"
PIPELINE = "/sluiceway/api/v1/pipeline"


class Clock:
    """The registry's clock, moved by the test: staleness without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _app(tmp_path: Path, clock: Clock, **overrides: Any) -> InProcessServer:
    a = InProcessServer(tmp_path / "data", **overrides)
    a.ctx.pipeline.clock = clock
    return a


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Iterator[InProcessServer]:
    a = _app(tmp_path, clock)
    yield a
    a.close()


def beat(id_: str, token: str, **kw: Any) -> dict[str, Any]:
    hb: dict[str, Any] = {"id": id_, "kind": "agent", "name": id_, "host": "h", "pid": 1,
                          "token": token, "ts": 0.0, "interval_s": 5.0,
                          "queue": {"depth": 0, "capacity": 10, "bytes": 0, "max_bytes": 10,
                                    "when_full": "block", "high_watermark": 0}}
    hb.update(kw)
    return hb


def post(app: InProcessServer, hb: dict[str, Any], tenant: str | None = None) -> httpx.Response:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    return app.post(HB, content=orjson.dumps(hb), headers=headers)


def cards(app: InProcessServer, tenant: str | None = None) -> list[dict[str, Any]]:
    r = app.get(PIPELINE, headers={"X-Scope-OrgID": tenant} if tenant else {})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def test_a_heartbeat_over_64_KiB_is_413_and_not_kept(app: InProcessServer) -> None:
    big = beat("big", "t", lost_by_reason={"x" * 70_000: 1})
    r = post(app, big)
    assert r.status_code == 413 and "heartbeat_max_size" in r.text, r.text
    # Without Content-Length: refused once 64 KiB came, the rest never read.
    body = CountingBody(b" " * 8192, 512 << 10)
    r = app.post(HB, content=body)
    assert r.status_code == 413
    assert body.pulled == 64 * 1024 + 8192
    assert post(app, beat("small", "t")).status_code == 204
    assert [c["id"] for c in cards(app)] == ["small"]


def test_cards_are_per_tenant_and_pipeline_shows_the_callers_tenant(app: InProcessServer) -> None:
    assert post(app, beat("web-1", "ta", name="a's web-1"), "team-a").status_code == 204
    assert post(app, beat("web-1", "tb", name="b's web-1"), "team-b").status_code == 204
    a, b = cards(app, "team-a"), cards(app, "team-b")
    assert [(c["tenant"], c["name"]) for c in a] == [("team-a", "a's web-1")]
    assert [(c["tenant"], c["name"]) for c in b] == [("team-b", "b's web-1")]
    assert cards(app) == []  # the default tenant has none
    assert "token" not in a[0]  # what proves ownership is never shown
    r = post(app, beat("web-1", "ta"), "team-a|team-b")
    assert r.status_code == 400 and "multiple org IDs present" in r.text


def test_another_token_is_409_until_the_card_is_stale(app: InProcessServer, clock: Clock) -> None:
    assert post(app, beat("agent-x", "first", name="first")).status_code == 204
    r = post(app, beat("agent-x", "intruder", name="intruder"))
    assert r.status_code == 409 and "belongs to another process" in r.text
    assert [c["name"] for c in cards(app)] == ["first"]
    clock.now += 10  # fresh still: 3 × 5 s have not passed
    assert post(app, beat("agent-x", "first", name="first again")).status_code == 204
    assert post(app, beat("agent-x", "restarted", name="restarted")).status_code == 409
    clock.now += 15.1  # stale now: a restarted process (new token) takes the card over
    assert cards(app)[0]["stale"] is True
    assert post(app, beat("agent-x", "restarted", name="restarted")).status_code == 204
    assert [(c["name"], c["stale"]) for c in cards(app)] == [("restarted", False)]
    assert post(app, beat("agent-x", "first", name="first")).status_code == 409


def test_a_heartbeat_without_a_token_is_400(app: InProcessServer) -> None:
    hb = beat("x", "t")
    del hb["token"]
    r = post(app, hb)
    assert r.status_code == 400 and '"token"' in r.text
    assert post(app, beat("x", "t", interval_s="soon")).status_code == 400


def test_at_most_1000_reporters_per_tenant(app: InProcessServer, clock: Clock) -> None:
    reg = app.ctx.pipeline
    for i in range(1000):
        reg.record("busy", beat(f"r{i:04}", f"t{i}"))
    r = post(app, beat("r1000", "t1000"), "busy")
    assert r.status_code == 429 and "too many reporters" in r.text, r.text
    assert post(app, beat("r1000", "t1000"), "other").status_code == 204  # per tenant
    assert post(app, beat("r0001", "t1"), "busy").status_code == 204  # known ids go on
    # Every card but r0000 reports again later; r0000 goes stale and makes room.
    clock.now += 10
    for i in range(1, 1000):
        reg.record("busy", beat(f"r{i:04}", f"t{i}"))
    clock.now += 6
    assert post(app, beat("r1000", "t1000"), "busy").status_code == 204
    ids = {c["id"] for c in cards(app, "busy")}
    assert len(ids) == 1000 and "r0000" not in ids and "r1000" in ids


def test_auth_enabled_needs_a_tenant_for_heartbeats_and_pipeline(tmp_path: Path,
                                                                  clock: Clock) -> None:
    a = _app(tmp_path, clock, **{"server.auth_enabled": True})
    try:
        assert post(a, beat("x", "t")).status_code == 401
        r = a.get(PIPELINE)
        assert r.status_code == 401 and "no org id" in r.text
        assert post(a, beat("x", "t"), "team-a").status_code == 204
        assert [c["id"] for c in cards(a, "team-a")] == ["x"]
    finally:
        a.close()


def test_multi_tenant_pipeline_lists_each_tenants_cards(tmp_path: Path, clock: Clock) -> None:
    a = _app(tmp_path, clock, **{"querier.multi_tenant_queries_enabled": True})
    try:
        assert post(a, beat("web-1", "ta"), "team-a").status_code == 204
        assert post(a, beat("web-1", "tb"), "team-b").status_code == 204
        got = [(c["tenant"], c["id"]) for c in cards(a, "team-b|team-a")]
        assert got == [("team-a", "web-1"), ("team-b", "web-1")]
        assert post(a, beat("web-1", "ta"), "team-a|team-b").status_code == 400
    finally:
        a.close()


def test_the_agent_sends_its_token_and_a_second_process_gets_409(server: ServerProcess,
                                                                   tmp_path: Path) -> None:
    cfg = AgentConfig(url=server.url, tenant="team-h", heartbeat_interval=60,
                      data_dir=tmp_path / "agent", queue={"when_full": "block"},
                      inputs=[{"type": "stdin"}])
    a, b = Agent(cfg, listen=""), Agent(cfg, listen="")  # two processes of one agent
    first, second = a._heartbeat(), b._heartbeat()
    assert first.token != second.token and a.id == b.id
    with httpx.Client(headers={"X-Scope-OrgID": "team-h"}) as http:
        assert first.send(http) and first.sent == 1
        assert second.send(http) and second.sent == 0 and second.refused == 409
        assert first.send(http) and first.sent == 2
    rows = httpx.get(f"{server.url}{PIPELINE}", headers={"X-Scope-OrgID": "team-h"}).json()
    assert [r["id"] for r in rows["data"]] == [a.id]
    assert rows["data"][0]["queue"]["unit"] == "lines"
    Heartbeat.model_validate({**rows["data"][0], "token": "t"})  # the card is the model


@pytest.mark.parametrize("change,field", [
    ({"queue": None}, '"queue"'),
    ({"queue": {"depth": "many", "capacity": 10, "when_full": "drop"}}, '"queue.depth"'),
    ({"queue": {"depth": 1, "capacity": 10, "when_full": "sometimes"}}, '"queue.when_full"'),
    ({"lines": {"shipped": -1}}, '"lines.shipped"'),
    ({"kind": "robot"}, '"kind"'),
    ({"ts": "yesterday"}, '"ts"'),
    ({"interval_s": 0}, '"interval_s"'),
    ({"lost_by_reason": {"full": 1.5}}, '"lost_by_reason.full"'),
    ({"version": 2}, '"version"'),
])
def test_a_malformed_heartbeat_is_400_naming_the_field(app: InProcessServer,
                                                        change: dict[str, Any],
                                                        field: str) -> None:
    hb = {**beat("bad", "t"), **change}
    if change.get("queue", 0) is None:
        del hb["queue"]
    r = post(app, hb)
    assert r.status_code == 400 and field in r.text, r.text
    assert "invalid heartbeat" in r.text
    assert cards(app) == []
    assert app.post(HB, content=b"[1, 2]").status_code == 400  # not an object
    r = app.post(HB, content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.text


def test_unknown_fields_of_a_newer_sender_are_ignored(app: InProcessServer) -> None:
    # (`ledger` was this test's unknown field until the ledger made it a known one)
    assert post(app, beat("newer", "t", cluster={"zone": "b"})).status_code == 204
    (card,) = cards(app)
    assert "cluster" not in card and card["version"] == 1


def test_the_client_reports_under_its_sinks_tenant(server: ServerProcess) -> None:
    client.configure(sinks=[client.LokiSink(server.url, tenant="team-c")], name="hb-client",
                     report_interval=0.2, capture_stdlib=False)
    try:
        deadline = time.monotonic() + 20
        rows: list[dict[str, Any]] = []
        while not rows and time.monotonic() < deadline:
            rows = httpx.get(f"{server.url}{PIPELINE}",
                             headers={"X-Scope-OrgID": "team-c"}).json()["data"]
            time.sleep(0.1)
        assert [(r["kind"], r["name"], r["tenant"]) for r in rows] == [
            ("client", "hb-client", "team-c")]
        assert httpx.get(f"{server.url}{PIPELINE}").json()["data"] == []
    finally:
        client.shutdown(timeout=0.5)


def test_lost_lines_of_the_last_5_and_60_minutes_beside_the_total(app: InProcessServer,
                                                                   clock: Clock) -> None:
    """Each card keeps a short history of its lost-line total: the page shows what was
    lost in the last 5 and 60 minutes, not only since the process started."""
    def lost(n: int, token: str = "t") -> None:
        hb = beat("loser", token, lines={"lost": n, "dropped": n})
        assert post(app, hb).status_code == 204

    def recent() -> tuple[int, int, int]:
        (c,) = cards(app)
        return c["lost_recent"]["5m"], c["lost_recent"]["60m"], c["lines"]["lost"]

    lost(100)  # first seen with 100 already lost: the baseline, in no window
    assert recent() == (0, 0, 100)
    clock.now += 60
    lost(130)
    assert recent() == (30, 30, 130)
    clock.now += 10 * 60  # ten quiet minutes: the 30 leave the 5-minute window
    lost(130)
    assert recent() == (0, 30, 130)
    clock.now += 60
    lost(170)
    assert recent() == (40, 70, 170)
    clock.now += 50 * 60  # the first 30 are now more than an hour old
    lost(170)
    assert recent() == (0, 40, 170)
    clock.now += 5  # another process's heartbeat is refused while the card is fresh
    assert post(app, beat("loser", "restarted", lines={"lost": 5})).status_code == 409
    assert recent() == (0, 40, 170)
    clock.now += 20
    lost(5, token="restarted")  # stale now: a new process counts from its own start
    assert recent() == (0, 0, 5)
    (c,) = cards(app)
    assert c["history_s"] == 0 and c["forget_after_s"] == 3600


def test_the_loss_history_stays_short_however_often_lines_are_lost(clock: Clock) -> None:
    from sluiceway.model import LossHistory

    h = LossHistory(clock.now, 0)
    for i in range(1, 20_000):  # a loss every second for five and a half hours
        clock.now += 1
        h.add(clock.now, i)
        assert len(h.ts) <= 3600 / 15 + 2
    # A window's edge is known to within one 15 s step (the losses of that step may be
    # left out, never counted twice).
    assert h.since(clock.now, 300) in range(285, 301)
    assert h.since(clock.now, 3600) in range(3585, 3601)


def test_a_silent_reporter_is_forgotten_after_heartbeat_forget_after(
        tmp_path: Path, clock: Clock) -> None:
    a = _app(tmp_path, clock)  # the default: an hour
    try:
        assert post(a, beat("gone", "t")).status_code == 204
        clock.now += 3599
        assert [(c["id"], c["stale"]) for c in cards(a)] == [("gone", True)]
        clock.now += 2
        assert cards(a) == []
    finally:
        a.close()
    b = _app(tmp_path / "b", clock, **{"server.heartbeat_forget_after": "10m"})
    try:
        assert post(b, beat("gone", "t")).status_code == 204
        clock.now += 601
        assert cards(b) == []
    finally:
        b.close()
