"""Long chains and deep nesting: chains of any length parse, evaluate and format (Loki
takes them); nesting past MAX_NESTING is a parse error, never a RecursionError; durations
past int64 nanoseconds are a parse error, and windows reaching past int64 are empty."""

from __future__ import annotations

import pytest

import sluiceway.logql._metric  # noqa: F401  (registers the metric evaluator)
from sluiceway.logql import MemorySource, ParseError, QueryParams, evaluate, format_query, parse
from sluiceway.logql._parse_base import MAX_NESTING
from sluiceway.model import StreamBatch

NOW = 1_700_000_000 * 10**9


def _source() -> MemorySource:
    src = MemorySource()
    src.push("t", [StreamBatch({"app": "a"}, [NOW - 2 * 10**9, NOW - 10**9],
                               ['level=info n=1', 'level=error n=2'])])
    return src


def _instant(q: str) -> object:
    res = evaluate(_source(), q, QueryParams(["t"], NOW, NOW, instant=True))
    return res.to_loki_json()["result"]


def test_chain_of_2000_literals() -> None:
    q = "+".join(["1"] * 2000)
    assert _instant(q)[1] == "2000"  # type: ignore[index]
    text = format_query(parse(q))
    assert format_query(parse(text)) == text


def test_chain_of_500_metric_operands() -> None:
    q = " - ".join(['count_over_time({app="a"}[1m])'] * 500)
    [sample] = _instant(q)  # type: ignore[misc]
    assert sample["value"][1] == str(2 - 2 * 499)
    text = format_query(parse(q))
    assert format_query(parse(text)) == text
    # One level: operands are indented once, not once more per operator.
    assert max(len(line) - len(line.lstrip()) for line in text.splitlines()) == 2


@pytest.mark.parametrize("op", ["and", "or", ","])
def test_label_filter_chain_of_2000(op: str) -> None:
    cond = 'level="error"' if op != "or" else 'level="nope"'
    q = '{app="a"} | logfmt | ' + f" {op} ".join([cond] * 1999 + ['n="2"'])
    res = evaluate(_source(), q, QueryParams(["t"], NOW - 10 * 10**9, NOW))
    lines = [v[1] for s in res.to_loki_json()["result"] for v in s["values"]]
    assert lines == ["level=error n=2"]
    text = format_query(parse(q))
    assert format_query(parse(text)) == text


def test_mixed_precedence_chain_formats_each_operand_once() -> None:
    q = "1 * 2 + 3 * 4 - 5 / 6 + (7 - 8) - 9 ^ 2 ^ 3"
    text = format_query(parse(q), width=10)
    assert format_query(parse(text), width=10) == text
    assert format_query(parse(text)) == format_query(parse(q))


@pytest.mark.parametrize("query", [
    "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1),
    "^".join(["2"] * (MAX_NESTING + 2)),
    "sum(" * (MAX_NESTING + 1) + 'rate({a="b"}[1m])' + ")" * (MAX_NESTING + 1),
    '{a="b"} | ' + "(" * (MAX_NESTING + 1) + 'x="1"' + ")" * (MAX_NESTING + 1),
    "(" * 100_000,
])
def test_nesting_past_the_limit_is_a_parse_error(query: str) -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(query)


def test_nesting_at_the_limit_evaluates_and_formats() -> None:
    depth = MAX_NESTING - 2  # the whole query is one level, vector() another
    q = "sum(" * depth + "vector(1)" + ")" * depth
    assert _instant(q)[0]["value"][1] == "1"  # type: ignore[index]
    text = format_query(parse(q), width=20)
    assert parse(text) == parse(q)


@pytest.mark.parametrize("query", [
    'rate({a="b"}[106752d])',
    'rate({a="b"}[1m] offset 8760000h)',
    'rate({a="b"}[1m] offset -8760000h)',
    '{a="b"} | logfmt | d > 300000y',
    'rate({a="b"}[' + "9" * 400 + 'h])',
])
def test_durations_past_int64_nanoseconds_are_parse_errors(query: str) -> None:
    with pytest.raises(ParseError, match="duration out of range"):
        parse(query)


@pytest.mark.parametrize(("query", "want"), [
    ('count_over_time({app="a"}[106751d])', [2]),
    ('count_over_time({app="a"}[106751d] offset 106751d)', []),
    ('count_over_time({app="a"}[1m] offset -106751d)', []),
    ('sum_over_time({app="a"} | logfmt | unwrap n [106751d] offset 106751d)', []),
    ('absent_over_time({app="a"}[106751d] offset 106751d)', [1]),
])
def test_windows_reaching_past_int64_hold_what_they_should(query: str, want: list[int]) -> None:
    got = [int(float(s["value"][1])) for s in _instant(query)]  # type: ignore[attr-defined]
    assert got == want


def test_step_grid_past_2262_is_a_query_error() -> None:
    from sluiceway.logql import QueryError

    latest = 2**63 - 1
    with pytest.raises(QueryError, match="reaches past"):
        evaluate(_source(), 'count_over_time({app="a"}[1m])',
                 QueryParams(["t"], latest - 10**12, latest, step_ns=7 * 10**18))


@pytest.mark.parametrize("query", ["10E308", "1e309 + 1", 'vector(1e400)',
                                   'topk(1e999, sum(rate({a="b"}[1m])))',
                                   '{a="b"} | logfmt | x > 1e999'])
def test_numbers_past_float64_are_parse_errors(query: str) -> None:
    """They were infinity, which format_query could not print (found by the fuzz suite)."""
    with pytest.raises(ParseError, match="value out of range"):
        parse(query)
