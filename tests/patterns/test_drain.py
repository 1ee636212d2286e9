"""The Drain miner and its tokenizers: Loki's pattern-ingester rules, bounded memory."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.logql import parse_selector, scan_logfmt
from sluiceway.model import EntryBlock
from sluiceway.patterns import (
    Drain,
    MinerConfig,
    PatternIngesterConfig,
    PatternMiner,
    detect_format,
    tokenizer_for,
)
from sluiceway.patterns._tokenize import _logfmt_pairs

S = 10**9
MS = 10**6


def test_formats_are_guessed_from_a_line() -> None:
    assert detect_format('{"msg":"x"}') == "json"
    assert detect_format('level=info msg="a b" n=1') == "logfmt"
    assert detect_format("INFO user 1 logged in") == "unknown"
    assert detect_format("x") == "unknown"


def test_text_tokens_and_join() -> None:
    t = tokenizer_for("unknown", 3000, [])
    got = t.tokenize("ERROR payment pay-4 failed: card declined (attempt 1)  twice")
    assert got is not None
    tokens, spaces = got
    assert tokens == ["ERROR", "payment", "pay-4", "failed:", "card", "declined", "(",
                      "attempt", "1", ")", "twice"]
    assert t.join(tokens, spaces) == "ERROR payment pay-4 failed: card declined (attempt 1)  twice"
    # Unicode punctuation cuts as well; other symbols stay in their token.
    tokens, spaces = t.tokenize("a«b» c+d")  # type: ignore[misc]
    assert tokens == ["a", "«", "b", "»", "c+d"]
    assert t.tokenize("x" * 3001) is None  # max_allowed_line_length


def test_logfmt_tokens_hide_times_and_quote_as_go_logfmt() -> None:
    t = tokenizer_for("logfmt", 3000, [])
    tokens, state = t.tokenize('ts=2024-01-01 t=5 level=info msg="a b" empty=')  # type: ignore[misc]
    assert tokens == ["ts", "<_>", "t", "<_>", "level", "info", "msg", "a b", "empty", ""]
    assert t.join(tokens, state) == 'ts=<_> t=<_> level=info msg="a b" empty='
    assert t.tokenize('bad "quote') is None  # not logfmt: not mined


def test_json_lines_are_mined_through_their_message() -> None:
    t = tokenizer_for("json", 3000, ["log", "message", "msg"])
    tokens, state = t.tokenize('{"level":"info","msg":"user 7 logged in"}')  # type: ignore[misc]
    assert t.join(tokens, state) == "<_>user 7 logged in<_>"
    assert t.tokenize('{"level":"info","status":200}') is None
    assert t.tokenize('{"msg": 5}') is None  # not a string


def _drain(**kw: object) -> Drain:
    return Drain(PatternIngesterConfig(**kw), tokenizer_for("unknown", 3000, []))  # type: ignore[arg-type]


def test_lines_of_one_template_make_one_pattern() -> None:
    d = _drain()
    for i in range(5):
        assert d.train(f"GET /api/users/{i} took {i * 3}ms from 10.0.0.{i}", i * 1000) == ""
    [c] = d.clusters.values()
    assert d.pattern(c) == "GET <_> took <_> from <_>"  # `/` holds a path together
    assert list(c.counts) == [5] and list(c.buckets) == [0]
    assert d.train("too few", 0) == "too_few_tokens"
    assert d.train(" ".join(["w"] * 81), 0) == "too_many_tokens"


def test_clusters_are_bounded_and_a_churning_stream_is_throttled() -> None:
    now = [0.0]
    d = Drain(PatternIngesterConfig(max_clusters=3), tokenizer_for("unknown", 3000, []),
              clock=lambda: now[0])
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    for w in words:
        d.train(f"{w} {w} {w} {w}", 0)
    assert len(d.clusters) == 3
    assert d.train("iota iota iota iota", 0) == "throttled"  # > 25% of new ones evicted
    now[0] += 601
    assert d.train("iota iota iota iota", 0) == ""  # ten minutes later it mines again


def _block(labels: dict[str, str], start_s: int, lines: list[str],
           every_s: int = 1) -> EntryBlock:
    ts = np.array([start_s * S + i * every_s * S for i in range(len(lines))], dtype=np.int64)
    return EntryBlock.from_lines(labels, ts, [x.encode() for x in lines])


def test_query_sums_streams_fills_gaps_and_drops_small_patterns() -> None:
    m = PatternMiner(MinerConfig(), clock=lambda: 10_000.0)
    lines = [f"job {i} done in {i}ms" for i in range(20)]
    m.add("t", _block({"app": "a", "pod": "1"}, 1000, lines))
    m.add("t", _block({"app": "a", "pod": "2"}, 1200, lines[:19] + [lines[19]], every_s=1))
    m.add("t", _block({"app": "a", "pod": "2"}, 1400, ["job 5 done in 7ms"]))
    m.add("t", _block({"app": "a", "pod": "3"}, 1000, ["lonely line here x"] * 5))
    [p] = m.query(["t"], parse_selector('{app="a"}'), 0, 2000 * S, 60 * S)
    assert (p.pattern, p.level, p.total) == ("job <_> done in <_>", "unknown", 41)
    # Summed over the streams, in 60 s buckets; a cluster's empty buckets between its
    # first and last lines come as 0 (pod 2: 1200 s and 1400 s).
    assert p.samples == [(960, 20), (1200, 20), (1260, 0), (1320, 0), (1380, 1)]
    [raw] = m.query(["t"], [], 0, 2000 * S, 10 * S)  # the sample interval: as kept
    assert raw.samples[:3] == [(1000, 10), (1010, 10), (1200, 10)]
    assert m.query(["other"], parse_selector('{app="a"}'), 0, 2000 * S, 60 * S) == []
    assert m.query(["t"], parse_selector('{app="a"}'), 1300 * S, 2000 * S, 60 * S) == []


def test_out_of_order_lines_and_stream_limit_are_counted() -> None:
    m = PatternMiner(MinerConfig(PatternIngesterConfig(max_streams_per_tenant=1)))
    m.add("t", _block({"app": "a"}, 1000, ["one two three four"]))
    m.add("t", _block({"app": "a"}, 900, ["one two three four"]))
    m.add("t", _block({"app": "b"}, 1000, ["one two three four"]))
    assert m.skipped == {"out_of_order": 1, "stream_limit": 1}
    assert m.mined == 1


def test_old_samples_and_empty_streams_are_forgotten() -> None:
    now = [5000.0]
    m = PatternMiner(MinerConfig(PatternIngesterConfig(retain_for=3600)), clock=lambda: now[0])
    m.add("t", _block({"app": "a"}, 1000, ["one two three four"] * 3))
    m.add("t", _block({"app": "b"}, 4000, ["five six seven eight"]))
    m.prune()  # 1000 s is older than 5000 - 3600
    assert [s.labels for s in m.tenants["t"].values()] == [{"app": "b"}]
    now[0] = 9000.0
    m.prune()
    assert m.tenants["t"] == {}


def test_levels_come_from_the_one_rule() -> None:
    m = PatternMiner(MinerConfig())
    lines = [f"level=error msg=boom n={i}" for i in range(30)] + \
        [f"level=info msg=fine n={i}" for i in range(30)]
    m.add("t", _block({"app": "a"}, 1000, lines))
    got = {(p.level, p.pattern) for p in m.query(["t"], [], 0, 3000 * S, 300 * S)}
    assert got == {("error", "level=error msg=boom n=<_>"), ("info", "level=info msg=fine n=<_>")}
    off = PatternMiner(MinerConfig(levels=None))  # discover_log_levels off: unknown
    off.add("t", _block({"app": "a"}, 1000, lines))
    assert {p.level for p in off.query(["t"], [], 0, 3000 * S, 300 * S)} == {"unknown"}


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='ab=" \\\tx\u00e9', max_size=16))
def test_the_fast_logfmt_cut_agrees_with_the_decoder(line: str) -> None:
    try:
        fast = _logfmt_pairs(line)
    except orjson.JSONDecodeError:  # the tokenizer falls back to the decoder then
        return
    pairs, err = scan_logfmt(line, strict=True)
    assert fast == (None if err else pairs)
