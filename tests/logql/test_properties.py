"""Property tests: the parser fails only with QueryError; format_query round-trips."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.logql import Expr, QueryError, format_query, parse

TOKENS = [
    "{", "}", "(", ")", "[", "]", ",", "|", "|=", "!=", "|~", "!~", "|>", "!>", "=", "=~",
    "==", ">", ">=", "<", "<=", "+", "-", "*", "/", "%", "^", "#", "`", '"', "\\",
    'app="a"', 'x=~"b.*"', '"str"', '"<_> a <b>"', '"(?P<n>x)"', "`raw`", "5m", "1h30m",
    "10KB", "1.5", "42", "-3", "json", "logfmt", "--strict", "--keep-empty", "regexp",
    "pattern", "unpack", "decolorize", "line_format", "label_format", "drop", "keep",
    "unwrap", "duration", "bytes", "ip", "or", "and", "unless", "by", "without", "on",
    "ignoring", "group_left", "group_right", "bool", "offset", "sum", "topk", "rate",
    "count_over_time", "quantile_over_time", "sum_over_time", "vector", "label_replace",
    "level", "__error__", "\n", '"{{.a}}"', '"{{"', "ip(", '"10.0.0.0/8"',
]

token_soup = st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join)

SELECTORS = st.sampled_from(['{app="a"}', '{app=~"a|b", env!="x"}', '{job="j", x!~"y"}'])
STRINGS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
LABEL = st.sampled_from(["level", "status", "msg", "x_1", "__error__"])


@st.composite
def label_filter(draw: st.DrawFn, depth: int = 0) -> str:
    if depth < 2 and draw(st.booleans()):
        op = draw(st.sampled_from([" and ", " or ", ", ", " "]))
        left, right = draw(label_filter(depth + 1)), draw(label_filter(depth + 1))
        return f"({left}{op}{right})" if draw(st.booleans()) else f"{left}{op}{right}"
    name = draw(LABEL)
    kind = draw(st.sampled_from(["str", "num", "dur", "bytes"]))
    if kind == "str":
        op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
        value = draw(st.sampled_from(["a", ".*", "x|y", ""])) if "~" in op else draw(STRINGS)
        return f"{name}{op}{_q(value)}"
    op = draw(st.sampled_from(["==", "!=", ">", ">=", "<", "<="]))
    value = {"num": draw(st.sampled_from(["1", "2.5", "-3", "1e3"])),
             "dur": draw(st.sampled_from(["5m", "1.5s", "100ms", "1h30m"])),
             "bytes": draw(st.sampled_from(["10KB", "1.5MiB", "3B"]))}[kind]
    return f"{name} {op} {value}"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@st.composite
def stage(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        op = draw(st.sampled_from(["|=", "!=", "|~", "!~"]))
        vals = draw(st.lists(st.sampled_from(["a", "b.c", "x+"]), min_size=1, max_size=3))
        return f"{op} " + " or ".join(_q(v) for v in vals)
    if kind == 1:
        return draw(st.sampled_from(["| json", '| json a="b.c[0]", d', "| logfmt",
                                     "| logfmt --strict a", "| unpack", "| decolorize"]))
    if kind == 2:
        return draw(st.sampled_from(['| regexp "(?P<a>\\\\w+)"', '| pattern "<a> <_>"']))
    if kind == 3:
        return f'| line_format {_q("{{.a}} " + draw(STRINGS).replace("{", ""))}'
    if kind == 4:
        return draw(st.sampled_from(['| label_format a=b', '| label_format a="{{.b}}", c=d']))
    if kind == 5:
        return draw(st.sampled_from(['| drop a, b="x"', '| keep a, b="c"', '| drop c=~"d"']))
    if kind == 6:
        return draw(st.sampled_from(['|> "<_> x"', '!> "y <_>"', '|= ip("10.0.0.0/8")']))
    return "| " + draw(label_filter())


@st.composite
def log_query(draw: st.DrawFn) -> str:
    return draw(SELECTORS) + " " + " ".join(draw(st.lists(stage(), max_size=5)))


@st.composite
def metric_query(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 4 if depth < 2 else 1))
    rng = draw(st.sampled_from(["1m", "5m", "1h30m", "90s"]))
    if kind == 0:
        op = draw(st.sampled_from(["rate", "count_over_time", "bytes_rate"]))
        return f"{op}({draw(log_query())} [{rng}])"
    if kind == 1:
        return draw(st.sampled_from(["1", "2.5", "-4", "vector(3)"]))
    if kind == 2:
        op = draw(st.sampled_from(["sum", "avg", "max", "count"]))
        grp = draw(st.sampled_from(["", " by (a)", " without (a, b)", " by ()"]))
        return f"{op}{grp} ({draw(metric_query(depth + 1))})"
    if kind == 3:
        op = draw(st.sampled_from(["+", "-", "*", "/", "%", "^", ">", "== bool", "<="]))
        return f"({draw(metric_query(depth + 1))}) {op} ({draw(metric_query(depth + 1))})"
    return (f"quantile_over_time(0.9, {draw(log_query())} | unwrap duration(d) "
            f"[{rng}]) by (a)")


def _round_trips(e: Expr) -> None:
    text = format_query(e)
    assert parse(text) == e, text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_arbitrary_text_only_query_errors(text: str) -> None:
    with contextlib.suppress(QueryError):
        _round_trips(parse(text))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token_soup)
def test_token_soup_only_query_errors(text: str) -> None:
    try:
        e = parse(text)
    except QueryError:
        return
    _round_trips(e)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(log_query(), metric_query()))
def test_generated_queries_parse_and_round_trip(text: str) -> None:
    try:
        e = parse(text)
    except QueryError as exc:  # generated metric combos may be semantically invalid
        assert "literal" in str(exc) or "bool" in str(exc), (text, str(exc))
        return
    _round_trips(e)
