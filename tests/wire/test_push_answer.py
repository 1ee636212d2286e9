"""`classify_push_answer` and `push_url`: what a Loki push answer means, shared by the agent
and the client. Recorded Loki answers (shared/fixtures/responses/limits_push_*) first."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import pytest

from sluiceway.wire import (
    ANSWER_REASONS,
    base_url,
    classify_push_answer,
    parse_retry_after,
    push_url,
)
from tests.procs import FIXTURES

RESPONSES = FIXTURES / "responses"


def recorded(name: str) -> tuple[int, str]:
    meta = json.loads((RESPONSES / f"{name}.request.json").read_text())
    return int(meta["status"]), (RESPONSES / meta["responseFile"]).read_text()


def test_recorded_loki_answers() -> None:
    ok = classify_push_answer(*recorded("limits_push_5_streams"))
    assert ok.kind == "shipped" and ok.lost(5) == {}
    labels = classify_push_answer(*recorded("limits_push_label_names_400"))
    assert (labels.kind, labels.reason) == ("rejected", "http_400")
    assert labels.lost(3) == {"http_400": 3}
    assert labels.detail.startswith("HTTP 400: entry for stream")
    # per-stream rate limit and stream limit: 429, retried, never counted lost here
    for name in ("limits_push_stream_rate_429", "limits_push_stream_rate_429_multi",
                 "limits_push_stream_limit_429", "limits_push_stream_limit_mixed"):
        ans = classify_push_answer(*recorded(name))
        assert (ans.kind, ans.reason, ans.lost(4)) == ("retry", "rate_limited", {}), name


def test_partial_400_loses_only_the_named_lines() -> None:
    body = ("entry for stream '{a=\"b\"}' has timestamp too old: x\n"
            "Max entry size '10' bytes exceeded for stream '{a=\"b\"}'\n"
            "entry for stream '{a=\"b\"}' has timestamp too new: y\n"
            "total ignored: 3 out of 7")
    mixed = classify_push_answer(400, body)
    assert mixed.kind == "partial" and mixed.ignored == 3
    assert mixed.lost(7) == {"too_old": 1, "line_too_long": 1, "too_far_in_future": 1}
    # Sluiceway's form: one detail line per reason, not per line: the first reason for all
    ours = classify_push_answer(400, "entry for stream '{a=\"b\"}' has timestamp too old: x"
                                     "\ntotal ignored: 5 out of 9")
    assert ours.lost(9) == {"too_old": 5}
    # never more lost than the batch held
    assert classify_push_answer(400, "total ignored: 9 out of 9 line_too_long").lost(3) == \
        {"line_too_long": 3}
    behind = classify_push_answer(400, "entry with timestamp 2026-01-01 ignored, reason: "
                                       "'entry too far behind, ...'\ntotal ignored: 1 out of 2")
    assert behind.lost(2) == {"too_far_behind": 1}


@pytest.mark.parametrize("status", [301, 307, 401, 403, 404, 405, 407])
def test_configuration_errors(status: int) -> None:
    ans = classify_push_answer(status, "404 page not found" if status == 404 else "")
    assert ans.kind == "config_error" and ans.lost(10) == {}
    assert ans.detail.startswith(f"HTTP {status}")


def test_too_large_and_retries() -> None:
    big = classify_push_answer(413, "request_body_too_large")
    assert (big.kind, big.reason, big.lost(4)) == ("too_large", "too_large", {})
    for status, reason in ((429, "rate_limited"), (500, "server_error"), (503, "server_error"),
                           (408, "server_error")):
        ans = classify_push_answer(status, "x", {"Retry-After": "2"})
        assert (ans.kind, ans.reason, ans.retry_after) == ("retry", reason, 2.0)
    assert classify_push_answer(503, "").retry_after is None
    when = formatdate(time.time() + 30, usegmt=True)
    assert classify_push_answer(429, "", {"Retry-After": when}).retry_after == \
        pytest.approx(30, abs=2)
    assert parse_retry_after("soon") is None


def test_other_4xx_lose_the_batch_and_details_are_short() -> None:
    ans = classify_push_answer(422, "x" * 5000)
    assert (ans.kind, ans.reason) == ("rejected", "http_422")
    assert len(ans.detail) < 400


@pytest.mark.parametrize("url,push,base", [
    ("http://h:3100", "http://h:3100/loki/api/v1/push", "http://h:3100"),
    ("http://h:3100/", "http://h:3100/loki/api/v1/push", "http://h:3100"),
    ("http://h:3100/loki/api/v1/push", "http://h:3100/loki/api/v1/push", "http://h:3100"),
    ("http://h:3100/loki/api/v1/push/", "http://h:3100/loki/api/v1/push", "http://h:3100"),
    ("https://h/logs", "https://h/logs/loki/api/v1/push", "https://h/logs"),
    ("https://h/logs/loki/api/v1/push", "https://h/logs/loki/api/v1/push", "https://h/logs"),
    ("http://h/api/prom/push", "http://h/api/prom/push", "http://h"),
])
def test_push_url_accepts_the_base_or_the_full_push_url(url: str, push: str,
                                                         base: str) -> None:
    assert push_url(url) == push
    assert base_url(url) == base


def test_every_reason_the_classifier_names_is_listed_for_counters_at_0() -> None:
    """Shippers show `ANSWER_REASONS` at 0 from the start: a reason missing there would
    make its counter appear only once lines are lost."""
    texts = ["timestamp too old", "timestamp too new", "Max entry size '10' bytes exceeded",
             "line too long", "entry too far behind", "entry out of order",
             "structured metadata too large", "too many structured metadata labels",
             "greater_than_max_sample_age", "too_far_in_future", "line_too_long",
             "something else"]
    bodies = [""] + [f"entry for stream '{{a=\"b\"}}' has {t}\ntotal ignored: 1 out of 2"
                     for t in texts] + [t for t in texts]
    bodies += [(RESPONSES / p.name).read_text() for p in RESPONSES.glob("limits_push_*.txt")]
    named: set[str] = set()
    for status in range(200, 600):
        for body in bodies:
            ans = classify_push_answer(status, body)
            named |= {ans.reason, *ans.by_reason} - {""}
    unlisted = {r for r in named if r not in ANSWER_REASONS and not r.startswith("http_")}
    assert not unlisted, unlisted
    assert {"structured_metadata_too_large", "structured_metadata_too_many", "too_old",
            "too_large", "rate_limited", "server_error"} <= named
