"""Query limits through the HTTP API, in process: the 11,000-points rule (query_range and
index/volume_range, Loki's recorded answer), the deadline inside one long block, the series
limit inside one block, and the template cap from `limits.max_line_size`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from sluiceway.logql._template_funcs import FUNCS
from sluiceway.model import Matcher
from tests.inproc import inproc_server
from tests.procs import FIXTURES

RESP = FIXTURES / "responses"
LOKI_TIMEOUT = ("request timed out, decrease the duration of the request or add more label "
                "matchers (prefer exact match over regex match) to reduce the amount of data "
                "processed")
H = 3600 * 10**9


def _loki_request(name: str, base: int) -> tuple[dict[str, Any], str]:
    req = json.loads((RESP / f"{name}.request.json").read_text())
    params = dict(req["params"])
    for k, rel in req.get("relativeParams", {}).items():
        params[k] = str(base + int(rel))
    return params, (RESP / req["responseFile"]).read_text().strip()


@pytest.mark.parametrize("name", ["limits_query_range_too_many_points",
                                  "limits_query_range_log_too_many_points"])
def test_query_range_points_rule_is_lokis(tmp_path: Path, name: str) -> None:
    params, loki = _loki_request(name, time.time_ns() - H)
    with inproc_server(tmp_path / "data") as srv:
        r = srv.http.get("/loki/api/v1/query_range", params=params)
    assert (r.status_code, r.text.strip()) == (400, loki)


@pytest.mark.parametrize("step,status", [
    ("0.001", 400),  # the 75 MB answer
    ("0.1", 400),
    ("0.32", 400),  # 11,250 points
    ("0.3273", 200),  # 10,999
])
def test_volume_range_has_the_same_points_rule(tmp_path: Path, step: str, status: int) -> None:
    loki = (RESP / "limits_query_range_too_many_points.response.txt").read_text().strip()
    end = time.time_ns()
    with inproc_server(tmp_path / "data") as srv:
        srv.push({"app": "vol"}, ["a line"], end - 10**9)
        r = srv.http.get("/loki/api/v1/index/volume_range", params={
            "query": '{app="vol"}', "start": str(end - H), "end": str(end), "step": step})
    assert r.status_code == status, r.text
    if status == 400:
        assert r.text.strip() == loki
    else:
        [series] = r.json()["data"]["result"]
        assert len(series["values"]) <= 11_002


def test_the_points_rule_admits_exactly_11000(tmp_path: Path) -> None:
    end = time.time_ns() // 10**9 * 10**9
    with inproc_server(tmp_path / "data") as srv:
        for path in ("/loki/api/v1/query_range", "/loki/api/v1/index/volume_range"):
            ok = srv.http.get(path, params={"query": '{app="x"}', "step": "1",
                                            "start": str(end - 11_000 * 10**9), "end": str(end)})
            over = srv.http.get(path, params={"query": '{app="x"}', "step": "1",
                                              "start": str(end - 11_001 * 10**9),
                                              "end": str(end)})
            assert (ok.status_code, over.status_code) == (200, 400), (path, ok.text, over.text)


class WorkClock:
    """A clock that moves only as the query works: 1 ms for every line that reaches the
    `probe` template function. The deadline passes while a block is being processed."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lines = 0

    def __call__(self) -> float:
        return self.now

    def line(self) -> str:
        self.lines += 1
        self.now += 0.001
        return ""


def test_the_deadline_is_checked_inside_one_long_block(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    clock = WorkClock()
    monkeypatch.setitem(FUNCS, "probe", clock.line)
    lines = 20_000
    with inproc_server(tmp_path / "data", query_timeout=0.0105) as srv:
        srv.push({"job": "big"}, [f"n={i}" for i in range(lines)])
        store = srv.ctx.store
        [series] = store.series(["fake"], [Matcher("job", "=", "big")], 0, 2**62)
        assert len(list(store.blocks(series, 0, 2**62, "forward"))) == 1  # one block
        srv.ctx.clock = clock
        r = srv.http.get("/loki/api/v1/query", params={
            "query": 'count_over_time({job="big"} | line_format "{{ probe }}" [1h])'})
    assert (r.status_code, r.text.strip()) == (504, LOKI_TIMEOUT)
    from sluiceway.logql import Deadline

    # The deadline passed after line 11 of 20,000; the query noticed at its next check,
    # long before the end of the block.
    assert 11 <= clock.lines < lines
    assert clock.lines - 11 <= Deadline.CHECK_EVERY <= 256


def test_the_series_limit_stops_the_query_inside_a_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setitem(FUNCS, "probe", lambda: seen.append(1) or "")
    with inproc_server(tmp_path / "data", max_query_series=3) as srv:
        srv.push({"job": "ids"}, [f"id={i}" for i in range(2000)])  # one block
        r = srv.http.get("/loki/api/v1/query", params={
            "query": 'count_over_time({job="ids"} | logfmt | line_format "{{ probe }}" [1h])'})
        ok = srv.http.get("/loki/api/v1/query", params={
            "query": 'sum(count_over_time({job="ids"} | logfmt [1h]))'})
    assert (r.status_code, r.text.strip()) == (
        400, "maximum of series (3) reached for a single query")
    assert len(seen) == 4  # of 2,000 lines: it stopped at the fourth series
    assert ok.status_code == 200 and ok.json()["data"]["result"][0]["value"][1] == "2000"


def test_templates_are_capped_at_max_line_size(tmp_path: Path) -> None:
    with inproc_server(tmp_path / "data", max_line_size=1000) as srv:
        srv.push({"job": "t"}, ["short line"])
        r = srv.http.get("/loki/api/v1/query_range", params={
            "query": '{job="t"} | line_format `{{ repeat 1001 "x" }}`',
            "start": str(time.time_ns() - H)})
    [stream] = r.json()["data"]["result"]
    assert stream["stream"]["__error__"] == "TemplateFormatErr"
    assert "max_line_size (1000 bytes)" in stream["stream"]["__error_details__"]
    assert [v[1] for v in stream["values"]] == ["short line"]
