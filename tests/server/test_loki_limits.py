"""Replay the "limits" group recorded against a real Loki (fixtures README, "Recorded
2026-12-04") against a real server configured as that Loki was, in the recorded order,
and compare every answer: status, text answers exactly (times moved to our base), JSON
answers by shape and values.

The server reads the group's Loki config under Loki's own section name (`limits_config`),
so this is also a Loki config at work.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sluiceway.model import format_go_time
from tests.procs import FIXTURES, ServerProcess

RESP = FIXTURES / "responses"
HOUR = 3600 * 10**9
# The order the group was recorded in (the fixtures README lists it so).
ORDER = [
    "limits_push_5_streams",
    "limits_push_stream_limit_429",
    "limits_push_stream_limit_mixed",
    "limits_push_stream_rate_429",
    "limits_push_stream_rate_429_multi",
    "limits_push_label_names_400",
    "limits_query_range_too_many_points",
    "limits_query_range_log_too_many_points",
    "limits_query_range_too_long",
    "limits_query_range_log_too_long",
    "limits_query_range_limit_too_big",
    "limits_query_limit_too_big",
    "limits_query_range_limit_ok",
]
# The group's Loki config (fixtures README), as a Loki config file. Recorded with
# discover_log_levels off (the README's "unless said"): no `detected_level` in its answers.
LOKI_CONFIG = """\
limits_config:
  discover_log_levels: false
  max_global_streams_per_user: 5
  per_stream_rate_limit: 1KB
  per_stream_rate_limit_burst: 2KB
  max_label_names_per_series: 5
  max_entries_limit_per_query: 1000
  max_query_length: 721h
  discover_service_name: []
  reject_old_samples: false
  ingestion_rate_mb: 256
  ingestion_burst_size_mb: 512
ingester:
  lifecycler:
    min_ready_duration: 0s
    final_sleep: 0s
"""
_GO_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? \+0000 UTC")


def _request(name: str) -> dict[str, Any]:
    req: dict[str, Any] = json.loads((RESP / f"{name}.request.json").read_text())
    return req


def _loki_base() -> int:
    return int(_request(ORDER[0])["baseNs"])


def _moved_go_times(text: str, loki_base: int, base: int) -> str:
    """Loki's Go-formatted entry times in `text`, moved from its base to ours."""
    def move(m: re.Match[str]) -> str:
        y, mo, d, h, mi, s, frac = m.groups()
        secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
        ns = secs * 10**9 + int((frac or "0").ljust(9, "0"))
        return format_go_time(ns - loki_base + base)
    return _GO_TIME.sub(move, text)


def _relative_streams(data: dict[str, Any], base: int) -> list[Any]:
    return [{"stream": s["stream"], "values": [[str(int(v[0]) - base), *v[1:]]
                                               for v in s["values"]]}
            for s in data["data"]["result"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("limits")
    cfg = d / "loki.yaml"
    cfg.write_text(LOKI_CONFIG)
    srv = ServerProcess(d / "data", config=cfg).start()
    yield srv
    srv.stop()


def test_every_limits_recording_is_replayed() -> None:
    recorded = {p.name.removesuffix(".request.json") for p in RESP.glob("limits_*.request.json")}
    assert recorded == set(ORDER)


def test_limits_answers_match_loki(server: ServerProcess) -> None:
    loki_base = _loki_base()
    # Our base in the same phase within the hour as Loki's, an hour or two ago, so the
    # pushes (base + 1 h) are in the past.
    base = loki_base + (time.time_ns() - HOUR - loki_base) // HOUR * HOUR
    for name in ORDER:
        req = _request(name)
        params = dict(req["params"])
        for k, rel in req.get("relativeParams", {}).items():
            params[k] = str(base + int(rel))
        content = None
        if "bodyRelative" in req:
            body = json.loads(req["bodyRelative"])
            for s in body["streams"]:
                s["values"] = [[str(base + int(v[0])), *v[1:]] for v in s["values"]]
            content = json.dumps(body).encode()
        r = httpx.request(req["method"], f"{server.url}{req['path']}", params=params,
                          content=content, headers=req["headers"], timeout=30)
        expected = (RESP / req["responseFile"]).read_text()
        assert r.status_code == req["status"], (name, r.text)
        if req["responseFile"].endswith(".txt"):
            want = _moved_go_times(expected, loki_base, base)
            assert r.text.rstrip("\n") == want.rstrip("\n"), name
            if req["status"] != 204:
                assert r.headers["content-type"].startswith("text/plain"), name
        else:
            ours, loki = r.json(), json.loads(expected)
            assert ours["status"] == loki["status"]
            assert ours["data"]["resultType"] == loki["data"]["resultType"]
            assert _relative_streams(ours, base) == _relative_streams(loki, loki_base), name


def test_the_loki_config_warned_once_about_what_has_no_effect(server: ServerProcess) -> None:
    lines = [ln for ln in server.log().splitlines() if "have no effect here" in ln]
    assert len(lines) == 1, server.log()
    assert "ingester.lifecycler" in lines[0]
    assert "max_global_streams_per_user" not in lines[0]


def test_go_time_moves_keep_their_nanoseconds() -> None:
    text = "entry with timestamp 2026-12-04 16:00:00.000000003 +0000 UTC ignored"
    moved = _moved_go_times(text, 1796396400000000000, 1796396400000000000 - HOUR)
    assert moved == "entry with timestamp 2026-12-04 15:00:00.000000003 +0000 UTC ignored"

