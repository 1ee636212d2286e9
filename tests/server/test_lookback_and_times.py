"""Reads as Loki's frontend limits them (`max_query_lookback`, `max_query_length`, the
entries limit, in Loki's order and with its texts), and time parameters read to the
nanosecond by one parser shared with `sluiceway query`. In-process."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from sluiceway.logcli import CliError
from sluiceway.logcli import parse_time as cli_time
from sluiceway.model import parse_time_param
from sluiceway.server._params import ParamError, check_query_length, parse_time
from tests.inproc import InProcessServer

HOUR = 3600 * 10**9


def _rfc3339_ns(ns: int) -> str:
    secs, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _push(srv: InProcessServer, values: list[tuple[int, str]], app: str = "lb") -> None:
    body = orjson.dumps({"streams": [{"stream": {"app": app},
                                      "values": [[str(t), line] for t, line in values]}]})
    r = srv.post("/loki/api/v1/push", content=body,
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text


def _lines(srv: InProcessServer, **params: str) -> list[str]:
    r = srv.get("/loki/api/v1/query_range", params={"query": '{app="lb"}', **params})
    assert r.status_code == 200, r.text
    return sorted(v[1] for s in r.json()["data"]["result"] for v in s["values"])


def test_max_query_lookback_moves_start_or_answers_empty(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "data", **{"limits.max_query_lookback": "1h",
                                                "limits.reject_old_samples": False})
    try:
        now = time.time_ns()
        _push(srv, [(now - 3 * HOUR, "old"), (now - 60 * 10**9, "recent")])
        assert _lines(srv, start=str(now - 4 * HOUR), end=str(now)) == ["recent"]
        # wholly before the lookback: Loki's empty answer, not an error
        assert _lines(srv, start=str(now - 4 * HOUR), end=str(now - 2 * HOUR)) == []
        r = srv.get("/loki/api/v1/labels", params={"start": str(now - 4 * HOUR),
                                                   "end": str(now - 2 * HOUR)})
        assert r.status_code == 200 and r.json()["data"] == []
        r = srv.get("/loki/api/v1/query", params={
            "query": 'count_over_time({app="lb"}[5h])', "time": str(now - 2 * HOUR)})
        assert r.status_code == 200 and r.json()["data"]["result"] == []
        r = srv.get("/loki/api/v1/query", params={
            "query": 'count_over_time({app="lb"}[5h])', "time": str(now)})
        assert r.json()["data"]["result"][0]["value"][1] == "1"  # the window is cut too
    finally:
        srv.close()


def test_query_length_is_checked_after_the_lookback_and_in_loki_words(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "data", **{"limits.max_query_lookback": "2d",
                                                "limits.max_query_length": "3d"})
    try:
        now = time.time_ns()
        # 10 days asked, 2 days left after the lookback: under the 3 day limit
        assert _lines(srv, start=str(now - 240 * HOUR), end=str(now)) == []
    finally:
        srv.close()
    with pytest.raises(ParamError) as exc:
        check_query_length(0, 768 * HOUR, 721 * 3600)
    assert str(exc.value) == ("the query time range exceeds the limit (query length: "
                              "768h0m0s, limit: 30d1h)")
    check_query_length(0, 721 * HOUR, 721 * 3600)  # equal is allowed


def test_the_entries_limit_applies_to_log_queries_only(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "data", **{"limits.max_entries_limit_per_query": 10})
    try:
        r = srv.get("/loki/api/v1/query_range", params={"query": '{app="lb"}', "limit": "11"})
        assert (r.status_code, r.text) == (400, "max entries limit per query exceeded, limit > "
                                                "max_entries_limit_per_query (11 > 10)\n")
        r = srv.get("/loki/api/v1/query_range", params={
            "query": 'count_over_time({app="lb"}[1m])', "limit": "11"})
        assert r.status_code == 200
    finally:
        srv.close()


def test_rfc3339_parameters_keep_their_nanoseconds(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "data")
    try:
        t = (time.time_ns() - HOUR) // 1000 * 1000  # a whole microsecond
        _push(srv, [(t + 100, "a"), (t + 900, "b")])
        assert _lines(srv, start=_rfc3339_ns(t + 500), end=_rfc3339_ns(t + 901)) == ["b"]
        assert _lines(srv, start=_rfc3339_ns(t), end=_rfc3339_ns(t + 900)) == ["a"]
    finally:
        srv.close()


@pytest.mark.parametrize(("text", "ns"), [
    ("2026-11-23T10:00:00.123456789Z", 1795428000_123456789),
    ("2026-11-23T11:00:00.000000001+01:00", 1795428000_000000001),
    ("1795428000", 1795428000 * 10**9),
    ("1795428000.5", 1795428000_500000000),
    ("1795428000123456789", 1795428000_123456789),
])
def test_one_time_parser_for_server_and_cli(text: str, ns: int) -> None:
    assert parse_time(text, 0) == parse_time_param(text) == cli_time(text, "--from") == ns


def test_the_cli_reads_epochs_by_their_digits() -> None:
    assert cli_time("1795428000123", "--from") == 1795428000_123_000_000  # milliseconds
    assert cli_time("1795428000123456", "--from") == 1795428000_123456_000  # microseconds
    # the server keeps Loki's rule: more than 10 digits are nanoseconds
    assert parse_time("1795428000123", 0) == 1795428000123
    with pytest.raises(CliError) as exc:
        cli_time("99999999999999999999", "--to")
    assert exc.value.code == 2 and "out of range" in str(exc.value)
