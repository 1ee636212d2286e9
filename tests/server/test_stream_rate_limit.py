"""Loki's `per_stream_rate_limit` / `_burst`: a stream object over its byte rate is refused
whole (429, Loki's text), the push's other streams are stored; the bucket refills at the
rate. In-process: no process boundary is under test (the recorded answers are replayed
against a real process in test_loki_limits.py)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from sluiceway.model import EntryBlock
from sluiceway.server._ratelimit import TokenBuckets, entry_sizes, stream_rate_message
from tests.inproc import InProcessServer


def _streams(*streams: tuple[str, list[str]]) -> bytes:
    now = time.time_ns()
    return orjson.dumps({"streams": [
        {"stream": {"app": "r", "n": n}, "values": [[str(now + i), line]
                                                     for i, line in enumerate(lines)]}
        for n, lines in streams]})


@pytest.fixture
def srv(tmp_path: Path) -> InProcessServer:
    s = InProcessServer(tmp_path / "data", **{"limits.per_stream_rate_limit": "1KB",
                                              "limits.per_stream_rate_limit_burst": "2KB"})
    yield s
    s.close()


def _push(srv: InProcessServer, body: bytes) -> tuple[int, str]:
    r = srv.post("/loki/api/v1/push", content=body,
                 headers={"Content-Type": "application/json"})
    return r.status_code, r.text


def _stored(srv: InProcessServer) -> dict[str, int]:
    r = srv.get("/loki/api/v1/query_range", params={
        "query": '{app="r"}', "limit": "1000", "start": str(time.time_ns() - 3600 * 10**9),
        "end": str(time.time_ns() + 10**9)})
    return {s["stream"]["n"]: len(s["values"]) for s in r.json()["data"]["result"]}


def test_the_stream_over_its_rate_is_refused_and_the_others_stored(
        srv: InProcessServer) -> None:
    status, text = _push(srv, _streams(("big", ["x" * 1500, "y" * 1500]), ("small", ["ok"])))
    assert status == 429
    assert text.endswith("user 'fake', total ignored: 2 out of 2 for stream: "
                         '{app="r", n="big"}\n')
    assert "(limit: 1KB/sec)" in text and "totaling 1500B" in text
    assert _stored(srv) == {"small": 1}
    m = srv.get("/metrics").text
    assert 'reason="per_stream_rate_limit"' in m and 'tenant="fake"} 2.0' in m


def test_a_burst_fits_then_the_rate_holds(srv: InProcessServer) -> None:
    assert _push(srv, _streams(("s", ["a" * 2000])))[0] == 204  # the burst: 2048 bytes
    assert _push(srv, _streams(("s", ["b" * 1000])))[0] == 429  # gone until it refills
    assert _push(srv, _streams(("t", ["c" * 1000])))[0] == 204  # another stream, own bucket


def test_the_answer_names_the_last_stream_refused(srv: InProcessServer) -> None:
    status, text = _push(srv, _streams(("one", ["x" * 3000]), ("two", ["y" * 3000]),
                                       ("three", ["ok"])))
    assert status == 429 and text.endswith('{app="r", n="two"}\n')
    assert _stored(srv) == {"three": 1}


def test_off_by_default(tmp_path: Path) -> None:
    s = InProcessServer(tmp_path / "data")
    try:
        assert _push(s, _streams(("s", ["x" * 100_000])))[0] == 204
    finally:
        s.close()


def test_token_buckets_refill_at_the_rate_up_to_the_burst() -> None:
    b = TokenBuckets()
    assert b.allow("k", 2048, 1024, 2048, now=0.0)
    assert not b.allow("k", 1, 1024, 2048, now=0.0)
    assert b.allow("k", 1024, 1024, 2048, now=1.0)  # one second: 1024 bytes back
    assert not b.allow("k", 4096, 1024, 2048, now=100.0)  # past the burst: never
    assert b.allow("k", 2048, 1024, 2048, now=100.0)  # full again, not more
    assert b.allow("k", 4096, 1024, 8192, now=100.0)  # a new limit: a new, full bucket
    b.allow("other", 1, 1024, 2048, now=100.0)
    assert len(b) == 2
    b.allow("k", 1, 1024, 8192, now=200.0)  # a sweep forgets buckets full again
    assert len(b) == 1


def test_entry_sizes_count_metadata_but_not_detected_level() -> None:
    block = EntryBlock.from_lines({"a": "b"}, [1, 2], [b"abc", b"de"],
                                  [{"trace_id": "12345", "detected_level": "info"}, None])
    assert entry_sizes(block).tolist() == [3 + len("trace_id") + 5, 2]


def test_at_most_ten_entries_are_listed_and_all_counted() -> None:
    block = EntryBlock.from_lines({"a": "b"}, list(range(12)), [b"x"] * 12)
    text = stream_rate_message("t", block, entry_sizes(block), 1024)
    lines = text.split("\n")
    assert len(lines) == 11 and lines[-1] == "user 't', total ignored: 12 out of 12 for " \
                                             'stream: {a="b"}'
    assert lines[0].startswith("entry with timestamp 1970-01-01 00:00:00 +0000 UTC ignored")
    assert "1970-01-01 00:00:00.000000009 +0000 UTC" in lines[9]
