"""`detected_level`: one rule (Loki's `discover_log_levels`) for every view, worked out
when lines are read: log lines, categorized results, metric series and filters agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluiceway.logql._metric  # noqa: F401  (registers the metric evaluator)
from sluiceway.logql import (
    LevelRules,
    MemorySource,
    QueryParams,
    block_levels,
    entry_level,
    evaluate,
)
from sluiceway.logql._levels import _logfmt_level, line_level
from sluiceway.model import EntryBlock, StreamBatch

RULES = LevelRules()
S = 10**9
NOW = 1_700_000_000 * S


@pytest.mark.parametrize(("line", "level"), [
    ('{"level":"error","msg":"x"}', "error"),
    ('{"lvl":"DBG"}', "debug"),
    ('{"log":{"level":"warning"}}', "warn"),  # one level down: searched
    ('{"a":{"b":{"level":"wrn"}}}', "unknown"),  # two levels down: not, and no word
    ('{"level":3,"msg":"an error here"}', "error"),  # not a string: the words decide
    ('{"level":"notice","msg":"info"}', "info"),  # no known level: the words decide
    ('{"msg":"x","severity":"fatal","level":"info"}', "fatal"),  # first in the document
    ("LEVEL=Error msg=x", "error"),  # logfmt keys in any case
    ("severity=warn level=info", "info"),  # `level` ranks before `severity`
    ("\u017feverity=error", "error"),  # a key in any case folds as the regex folds it
    ('msg="level=error" x=1', "error"),  # a quoted value holds no key; the word decides
    ("ts=1 msg=hello", "unknown"),
    ("2024-01-01 [ERROR] disk full", "error"),
    ("WARN: disk almost full", "warn"),
    ("info: then an error", "info"),  # the earliest word wins
    ("terrorist attack", "unknown"),  # not a word on its own
    ("misc:error happened", "unknown"),  # a colon before it is no boundary
    ("an err: x", "error"),
    ("INFO user 1 logged in", "info"),
])
def test_line_levels(line: str, level: str) -> None:
    assert entry_level(RULES, {"app": "a"}, None, line) == level


def test_order_of_sources() -> None:
    line = "level=error boom"
    assert entry_level(RULES, {"level": "INFO"}, None, line) == "info"  # stream label
    assert entry_level(RULES, {"level": "notice"}, None, line) == "notice"  # kept as is
    assert entry_level(RULES, {"level": "info"}, {"detected_level": "WARNING"}, line) == "warn"
    assert entry_level(RULES, {}, {"severity": "Critical"}, line) == "critical"
    assert entry_level(RULES, {}, {"severity_number": "17"}, "hello") == "error"
    assert entry_level(RULES, {}, {"severity_number": "0"}, "hello") == "unknown"
    assert entry_level(RULES, {}, {"trace_id": "abc"}, line) == "error"  # from the line
    only_lvl = LevelRules(fields=("lvl",))
    assert entry_level(only_lvl, {"level": "info"}, None, "lvl=warn") == "warn"
    assert entry_level(LevelRules(json_max_depth=0), {}, None,
                       '{"a":{"b":{"level":"wrn"}}}') == "warn"


def test_block_levels_uniform_when_the_stream_decides() -> None:
    b = EntryBlock.from_lines({"app": "a", "level": "ERR"}, np.array([1, 2]),
                              [b"x", b"level=info"])
    assert block_levels(RULES, b) == "error"
    b2 = EntryBlock.from_lines({"app": "a"}, np.array([1, 2, 3]),
                               [b"level=info", b"x", b'{"level":"warn"}'])
    assert block_levels(RULES, b2) == ["info", "unknown", "warn"]
    assert block_levels(RULES, b2, np.array([2])) == ["", "", "warn"]


def _source() -> MemorySource:
    src = MemorySource()
    src.push("t", [
        StreamBatch({"app": "a"}, [NOW - 3 * S, NOW - 2 * S, NOW - S],
                    ["level=info n=1", "level=error n=2", "plain error text"]),
        StreamBatch({"app": "b", "level": "warning"}, [NOW - 3 * S], ['{"msg":"x"}']),
    ])
    return src


def _params(**kw: object) -> QueryParams:
    return QueryParams(["t"], NOW - 60 * S, NOW, levels=RULES, **kw)  # type: ignore[arg-type]


def test_log_query_carries_detected_level() -> None:
    res = evaluate(_source(), '{app=~"a|b"}', _params(limit=10)).to_loki_json()["result"]
    got = {(s["stream"].get("app"), v[1]): s["stream"]["detected_level"]
           for s in res for v in s["values"]}
    assert got == {("a", "level=info n=1"): "info", ("a", "level=error n=2"): "error",
                   ("a", "plain error text"): "error", ("b", '{"msg":"x"}'): "warn"}
    cat = evaluate(_source(), '{app="b"}', _params(categorize_labels=True)).to_loki_json()
    assert cat["result"] == [{"stream": {"app": "b", "level": "warning"}, "values": [
        [str(NOW - 3 * S), '{"msg":"x"}', {"structuredMetadata": {"detected_level": "warn"}}]]}]


def test_without_rules_nothing_is_added() -> None:
    res = evaluate(_source(), '{app="a"}', QueryParams(["t"], NOW - 60 * S, NOW))
    assert [s["stream"] for s in res.to_loki_json()["result"]] == [{"app": "a"}]


def test_filter_on_detected_level_after_a_parser() -> None:
    # The line holds no "error" text: the prefilter of `| json | x="error"` must not drop it.
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "c", "level": "ERR"}, [NOW - S], ['{"msg":"boom"}'])])
    res = evaluate(src, '{app="c"} | json | detected_level="error"', _params())
    assert [v[1] for s in res.to_loki_json()["result"] for v in s["values"]] == ['{"msg":"boom"}']


def _metric(q: str) -> dict[str, float]:
    res = evaluate(_source(), q, QueryParams(["t"], NOW, NOW, instant=True, levels=RULES))
    return {str(sorted(r["metric"].items())): float(r["value"][1])
            for r in res.to_loki_json()["result"]}


def test_metric_series_by_detected_level() -> None:
    assert _metric('sum by (detected_level) (count_over_time({app=~"a|b"}[1m]))') == {
        "[('detected_level', 'error')]": 2.0, "[('detected_level', 'info')]": 1.0,
        "[('detected_level', 'warn')]": 1.0}
    assert _metric('sum(count_over_time({app=~"a|b"}[1m]))') == {"[]": 4.0}
    # Without an aggregation the series keep it, as Loki's keep structured metadata.
    assert _metric('count_over_time({app="a"}[1m])') == {
        "[('app', 'a'), ('detected_level', 'error')]": 2.0,
        "[('app', 'a'), ('detected_level', 'info')]": 1.0}
    assert _metric('sum(count_over_time({app=~"a|b"} | detected_level="error" [1m]))') == {
        "[]": 2.0}
    assert _metric('sum by (detected_level) (count_over_time({app="a"} | logfmt [1m]))') == {
        "[('detected_level', 'error')]": 2.0, "[('detected_level', 'info')]": 1.0}


_PIECES = ["level=", "LEVEL=", "Level=", "lvl=", "severity=", "SeverityText=", "log.level=",
           "severity_text=", "leve", "l=", "=", " ", "\t", '"', "\\", "info", "error", "WARN",
           "x", "msg=", "ſeverity=", "İ", "K", "lеvel=", "é"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12),
       st.sampled_from([RULES, LevelRules(("Lvl", "sev")), LevelRules(("sKu",))]))
def test_the_logfmt_key_prefilter_changes_no_level(pieces: list[str],
                                                   rules: LevelRules) -> None:
    """An ASCII line without any `key=` (in lower case) is passed over without the
    logfmt regex: every line gets the level the regex alone gives it (non-ASCII
    lines, whose case folding `lower()` does not match, always take the regex)."""
    line = "".join(pieces)
    bare = LevelRules(rules.fields, rules.json_max_depth)
    object.__setattr__(bare, "logfmt_needles", ())
    assert _logfmt_level(line, rules) == _logfmt_level(line, bare)
    assert line_level(rules, line) == line_level(bare, line)
