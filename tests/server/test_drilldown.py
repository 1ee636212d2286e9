"""Drilldown endpoints beyond the recorded answers: one level per line in every view,
index/volume's targetLabels and aggregateBy, limits and bad input (4xx, never 500)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluiceway.server import ConfigError, load_config
from sluiceway.server._app import pattern_service
from tests.inproc import InProcessServer, wait_for

S = 10**9
LINES = [  # no level label: the level comes from each line
    'level=info msg="user logged in" user=1',
    'level=warn msg="slow request" took=2s',
    '{"level":"error","msg":"payment failed","code":502}',
    "ERROR could not reach the database at 10.0.0.7",
    "just some text without a level",
    '{"lvl":"DBG","msg":"cache miss"}',
]


def _push(srv: InProcessServer, streams: list[dict[str, Any]], tenant: str | None = None,
          status: int = 204) -> str:
    headers = {"Content-Type": "application/json"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    r = srv.post("/loki/api/v1/push", content=orjson.dumps({"streams": streams}),
                 headers=headers)
    assert r.status_code == status, r.text
    return r.text


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcessServer]:
    s = InProcessServer(tmp_path / "data", **{"pattern_ingester.enabled": True})
    s.ctx.patterns = pattern_service(s.ctx, in_process=True)  # no ASGI lifespan here
    yield s
    if s.ctx.patterns is not None:
        s.ctx.patterns.close()
    s.close()


def _range(now: int) -> dict[str, str]:
    return {"start": str(now - 3600 * S), "end": str(now + S)}


def test_every_view_agrees_on_a_lines_level(srv: InProcessServer) -> None:
    now = time.time_ns()
    # 40 copies of each line, so each one makes a pattern (>= 30 lines).
    values = [[str(now - (600 - i) * S), LINES[i % len(LINES)]] for i in range(40 * len(LINES))]
    _push(srv, [{"stream": {"app": "mixed"}, "values": values}])
    q = {"query": '{app="mixed"}', **_range(now)}

    # Explore: the level each line comes back with (categorized, as the UI asks).
    r = srv.get("/loki/api/v1/query_range", params={**q, "limit": "1000"},
                headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"})
    by_line = {v[1]: v[2]["structuredMetadata"]["detected_level"]
               for s in r.json()["data"]["result"] for v in s["values"]}
    assert by_line == dict(zip(LINES, ["info", "warn", "error", "error", "unknown", "debug"],
                               strict=True))
    per_level = Counter(by_line[v[1]] for v in values)

    # The volume the level histogram draws.
    r = srv.get("/loki/api/v1/query", params={
        "query": 'sum by (detected_level) (count_over_time({app="mixed"}[1h]))',
        "time": str(now + S)})
    assert {x["metric"]["detected_level"]: int(x["value"][1])
            for x in r.json()["data"]["result"]} == per_level

    # Detected fields and the values of detected_level.
    r = srv.get("/loki/api/v1/detected_field/detected_level/values",
                params={**q, "line_limit": "1000"})
    assert sorted(r.json()["values"]) == sorted(per_level)
    fields = {f["label"]: f for f in srv.get("/loki/api/v1/detected_fields",
                                             params={**q, "line_limit": "1000"}).json()["fields"]}
    assert fields["detected_level"] == {"label": "detected_level", "type": "string",
                                        "cardinality": len(per_level), "parsers": None}
    assert fields["code"]["jsonPath"] == ["code"] and fields["took"]["type"] == "duration"

    # A filter on it.
    r = srv.get("/loki/api/v1/query_range", params={
        **q, "query": '{app="mixed"} | detected_level="error"', "limit": "1000"})
    assert sum(len(s["values"]) for s in r.json()["data"]["result"]) == per_level["error"]

    # Patterns: each pattern's level is the level of its lines.
    assert srv.ctx.patterns is not None
    wait_for(lambda: srv.ctx.patterns is not None and not srv.ctx.patterns.pending(),
             "the push to be mined")
    found = srv.get("/loki/api/v1/patterns", params={**q, "step": "60"}).json()["data"]
    levels = Counter()
    for p in found:
        levels[p["level"]] += sum(n for _, n in p["samples"])
    # The stream's format is guessed from its first line (logfmt, as Loki does): its JSON
    # lines do not tokenize as logfmt and are not mined; every other line counts once,
    # under its own level.
    assert levels == {"info": 40, "warn": 40, "error": 40, "unknown": 40}


def test_no_detected_level_when_discovery_is_off(tmp_path: Path) -> None:
    s = InProcessServer(tmp_path / "data", **{"limits.discover_log_levels": False})
    try:
        now = time.time_ns()
        _push(s, [{"stream": {"app": "a"}, "values": [[str(now - S), "level=error x=1"]]}])
        r = s.get("/loki/api/v1/query_range", params={"query": '{app="a"}', **_range(now)})
        assert [x["stream"] for x in r.json()["data"]["result"]] == [{"app": "a"}]
        fields = s.get("/loki/api/v1/detected_fields",
                       params={"query": '{app="a"}', **_range(now)}).json()["fields"]
        assert {f["label"] for f in fields} == {"level", "x"}
        limits = s.get("/loki/api/v1/drilldown-limits", headers={"X-Scope-OrgID": "fake"})
        assert limits.json()["limits"]["discover_log_levels"] is False
        assert s.get("/loki/api/v1/patterns", params={"query": '{app="a"}'}).status_code == 404
    finally:
        s.close()


def test_structured_metadata_refused_when_not_allowed(tmp_path: Path) -> None:
    s = InProcessServer(tmp_path / "data", **{"limits.allow_structured_metadata": False})
    try:
        now = time.time_ns()
        text = _push(s, [{"stream": {"app": "a"}, "values": [
            [str(now - 2 * S), "with", {"trace_id": "abc"}], [str(now - S), "without"]]}],
            status=400)
        assert text.startswith("stream '{app=\"a\"}' includes structured metadata, but this "
                               "feature is disallowed. Please see "
                               "`limits_config.allow_structured_metadata`")
        assert "total ignored: 1 out of 2" in text
        r = s.get("/loki/api/v1/query_range", params={"query": '{app="a"}', **_range(now)})
        # The other line is stored; no level is discovered (Loki needs metadata for it).
        assert r.json()["data"]["result"] == [{"stream": {"app": "a"},
                                               "values": [[str(now - S), "without"]]}]
    finally:
        s.close()


def _volume(srv: InProcessServer, now: int, **params: str) -> dict[str, str]:
    r = srv.get("/loki/api/v1/index/volume", params={**_range(now), **params})
    assert r.status_code == 200, r.text
    return {orjson.dumps(x["metric"]).decode(): x["value"][1]
            for x in r.json()["data"]["result"]}


def test_volume_target_labels_and_aggregate_by(srv: InProcessServer) -> None:
    now = time.time_ns()
    _push(srv, [{"stream": {"env": "p", "app": "a", "level": "info"},
                 "values": [[str(now - S), "x" * 100]]},
                {"stream": {"env": "p", "app": "b"}, "values": [[str(now - S), "y" * 10]]}])
    # A target the selector does not name must be there (Loki adds `level=~".+"`).
    assert _volume(srv, now, query='{env="p"}', targetLabels="level") == {
        '{"level":"info"}': "100"}
    assert _volume(srv, now, query='{env="p"}', aggregateBy="labels") == {
        '{"app":""}': "110", '{"env":""}': "110", '{"level":""}': "100"}
    assert _volume(srv, now, query='{env="p"}', aggregateBy="labels",
                   targetLabels="app") == {'{"app":""}': "110"}
    assert _volume(srv, now, query='{env="p"}') == {'{"env":"p"}': "110"}


@pytest.mark.parametrize(("path", "params", "status", "text"), [
    ("/loki/api/v1/detected_fields", {}, 400, "query parameter is required"),
    ("/loki/api/v1/detected_fields", {"query": 'sum(rate({a="b"}[1m]))'}, 400, "log query"),
    ("/loki/api/v1/detected_fields", {"query": '{a="b"', }, 400, "parse error"),
    ("/loki/api/v1/detected_fields", {"query": '{a="b"}', "line_limit": "5001"}, 400,
     "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)"),
    ("/loki/api/v1/detected_fields", {"query": '{a="b"}', "limit": "0"}, 400,
     "limit must be a positive value"),
    ("/loki/api/v1/detected_field/x/values", {"query": '{a="b"}', "step": "0.001"}, 400,
     "11,000 points"),
    ("/loki/api/v1/patterns", {"query": '{a="b"} |= "x"'}, 400, "parse error"),
    ("/loki/api/v1/patterns", {"query": '{a="b"}', "step": "x"}, 400, "step"),
    ("/loki/api/v1/detected_labels", {"query": "nope"}, 400, "parse error"),
    ("/loki/api/v1/drilldown-limits", {}, 401, "no org id"),
])
def test_bad_input_is_a_4xx(srv: InProcessServer, path: str, params: dict[str, str],
                            status: int, text: str) -> None:
    r = srv.get(path, params=params)
    assert r.status_code == status, r.text
    assert text in r.text


def test_empty_answers(srv: InProcessServer) -> None:
    q = {"query": '{app="nothing"}'}
    assert srv.get("/loki/api/v1/detected_fields", params=q).json() == {}
    assert srv.get("/loki/api/v1/detected_field/x/values", params=q).json() == {}
    assert srv.get("/loki/api/v1/detected_labels", params=q).json() == {}
    assert srv.get("/loki/api/v1/patterns", params=q).json() == {"status": "success",
                                                                  "data": []}


@pytest.mark.parametrize(("value", "fields"), [
    ("level,lvl", ["level", "lvl"]),  # Loki's comma-separated form
    ('["level", "lvl"]', ["level", "lvl"]),
    ("", []),  # empty: Loki's list
])
def test_level_fields_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str,
                                           fields: list[str]) -> None:
    monkeypatch.setenv("SLUICEWAY_LIMITS__LOG_LEVEL_FIELDS", value)
    assert load_config(None).limits.log_level_fields == fields


def test_a_bad_level_field_list_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_LIMITS__LOG_LEVEL_FIELDS", "[unclosed")
    with pytest.raises(ConfigError, match="limits.log_level_fields"):
        load_config(None)


def test_levels_and_drilldown_limits_are_the_tenants(tmp_path: Path) -> None:
    """A tenant's runtime overrides decide its lines' `detected_level` and what
    drilldown-limits reports for it; other tenants keep the config's."""
    rt = tmp_path / "overrides.yaml"
    rt.write_text("overrides:\n  quiet:\n    discover_log_levels: false\n"
                  "    max_query_length: 1d\n    max_query_bytes_read: 1GiB\n"
                  "  custom:\n    log_level_fields: sev\n")
    s = InProcessServer(tmp_path / "data", **{"runtime_config.file": str(rt)})
    try:
        now = time.time_ns()
        line = "sev=warn level=error x=1"
        q = {"query": '{app="a"}', **_range(now)}
        levels = {}
        for tenant in ("fake", "quiet", "custom"):
            h = {"X-Scope-OrgID": tenant}
            _push(s, [{"stream": {"app": "a"}, "values": [[str(now - S), line]]}], tenant)
            r = s.get("/loki/api/v1/query_range", params=q, headers=h)
            levels[tenant] = [x["stream"].get("detected_level")
                              for x in r.json()["data"]["result"]]
            r = s.get("/loki/api/v1/query", headers=h, params={
                "query": 'sum by (detected_level) (count_over_time({app="a"}[1h]))',
                "time": str(now)})
            assert [x["metric"] for x in r.json()["data"]["result"]] == [
                {"detected_level": levels[tenant][0]} if levels[tenant][0] else {}]
        assert levels == {"fake": ["error"], "quiet": [None], "custom": ["warn"]}
        mine = s.get("/loki/api/v1/drilldown-limits", headers={"X-Scope-OrgID": "quiet"})
        lim = mine.json()["limits"]
        assert lim["discover_log_levels"] is False
        assert (lim["max_query_length"], lim["max_query_bytes_read"]) == ("1d", "1GB")
        lim = s.get("/loki/api/v1/drilldown-limits",
                    headers={"X-Scope-OrgID": "fake"}).json()["limits"]
        assert lim["discover_log_levels"] is True
        assert (lim["max_query_length"], lim["max_query_bytes_read"]) == ("30d1h", "0B")
        lim = s.get("/loki/api/v1/drilldown-limits",
                    headers={"X-Scope-OrgID": "custom"}).json()["limits"]
        assert lim["log_level_fields"] == ["sev"]
    finally:
        s.close()


def test_drilldown_reads_see_no_further_back_than_max_query_lookback(tmp_path: Path) -> None:
    """As every other read: a tenant's `max_query_lookback` bounds detected fields, their
    values, detected labels and patterns (wholly before it: an empty answer)."""
    rt = tmp_path / "overrides.yaml"
    rt.write_text("overrides:\n  short:\n    max_query_lookback: 1h\n")
    s = InProcessServer(tmp_path / "data", **{"runtime_config.file": str(rt),
                                              "pattern_ingester.enabled": True})
    s.ctx.patterns = pattern_service(s.ctx, in_process=True)
    try:
        now = time.time_ns()
        old = [[str(now - 2 * 3600 * S + i * S), f"user=old{i % 2} took={i}ms"]
               for i in range(40)]
        new = [[str(now - 600 * S + i * S), "user=new took=3ms"] for i in range(40)]
        got: dict[str, Any] = {}
        for tenant in ("fake", "short"):
            _push(s, [{"stream": {"app": "old"}, "values": old},
                      {"stream": {"app": "new"}, "values": new}], tenant)
        assert s.ctx.patterns is not None
        wait_for(lambda: s.ctx.patterns is not None and not s.ctx.patterns.pending(),
                 "the pushes to be mined")
        for tenant in ("fake", "short"):
            h = {"X-Scope-OrgID": tenant}
            q = {"query": '{app=~"old|new"}', "start": str(now - 3 * 3600 * S),
                 "end": str(now), "line_limit": "1000"}
            got[tenant] = (
                sorted(s.get("/loki/api/v1/detected_field/user/values", params=q,
                             headers=h).json()["values"]),
                sorted(x["cardinality"] for x in s.get("/loki/api/v1/detected_labels",
                                                       params=q, headers=h)
                       .json()["detectedLabels"]),
                len(s.get("/loki/api/v1/patterns", params={**q, "step": "60"},
                          headers=h).json()["data"]))
            before = {"query": '{app="old"}', "start": str(now - 3 * 3600 * S),
                      "end": str(now - 90 * 60 * S)}
            got[tenant + "-before"] = [s.get(f"/loki/api/v1/{path}", params=before,
                                             headers=h).json()
                                       for path in ("detected_fields", "detected_labels")]
        assert got["fake"] == (["new", "old0", "old1"], [2], 2)
        assert got["short"] == (["new"], [1], 1)
        assert got["short-before"] == [{}, {}]
        assert got["fake-before"][0]["fields"] and got["fake-before"][1]["detectedLabels"]
    finally:
        if s.ctx.patterns is not None:
            s.ctx.patterns.close()
        s.close()


def test_patterns_are_mined_from_what_the_heads_stored(srv: InProcessServer) -> None:
    """The miner gets what the heads stored: a push they answered with a partial 400 is
    mined without the exact duplicates they dropped (here: all its recent lines, sent
    again), so the pattern counts what a query finds. (The refused lines, too far
    behind, are left out too; the miner would skip those on its own.)"""
    now = time.time_ns()
    recent = [[str(now - (600 - i) * S), f"request {i} served in {i}ms"] for i in range(40)]
    _push(srv, [{"stream": {"app": "p"}, "values": recent}])
    behind = [[str(now - 5400 * S + i * S), f"stale job {i} done in {i}ms"] for i in range(40)]
    text = _push(srv, [{"stream": {"app": "p"}, "values": behind + recent}], status=400)
    assert "entry too far behind" in text and "total ignored: 40 out of 80" in text
    q = {"query": '{app="p"}', "start": str(now - 4 * 3600 * S), "end": str(now + S),
         "step": "60"}
    assert srv.ctx.patterns is not None
    wait_for(lambda: srv.ctx.patterns is not None and not srv.ctx.patterns.pending(),
             "the pushes to be mined")
    found = srv.get("/loki/api/v1/patterns", params=q).json()["data"]
    assert [(p["pattern"], sum(n for _, n in p["samples"])) for p in found] == [
        ("request <_> served in <_>", 40)]
