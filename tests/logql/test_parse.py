"""Parser: ASTs, Loki-style errors with positions, semantic rejections, format round trip."""

from __future__ import annotations

import pytest

from sluiceway.logql import (
    BinaryOp,
    Grouping,
    JsonParser,
    LabelBinary,
    LabelCompare,
    LabelFilter,
    LineFilter,
    Literal,
    LogExpr,
    LogfmtParser,
    ParseError,
    QueryError,
    RangeAggregation,
    Unwrap,
    VectorAggregation,
    VectorMatching,
    format_query,
    parse,
    parse_selector,
)
from sluiceway.model import Matcher

EMPTY = ("parse error : queries require at least one regexp or equality matcher that does "
         "not have an empty-compatible value. For instance, app=~\".*\" does not meet this "
         "requirement, but app=~\".+\" will")

ERRORS = [
    ('{app="api"', "parse error at line 1, col 11: syntax error: unexpected $end, "
                   "expecting } or ,"),
    ('{app="api",}', "parse error at line 1, col 12: syntax error: unexpected }"),
    ("{app}", "parse error at line 1, col 5: syntax error: unexpected }"),
    ('{app="api"} |', "parse error at line 1, col 14: syntax error: unexpected $end"),
    ('{app="api"} | json |', "parse error at line 1, col 21: syntax error: unexpected $end"),
    ('{app="api"} |= 5', "parse error at line 1, col 16: syntax error: unexpected NUMBER"),
    ('{app="a"}\n  |= 5', "parse error at line 2, col 6: syntax error: unexpected NUMBER"),
    ('{app="api"} |~ "(("', "parse error at line 1, col 13: error parsing regexp: "),
    ('{app=~"(("}', "parse error at line 1, col 5: error parsing regexp: "),
    ('{app="a"} | regexp "no names"', "parse error at line 1, col 20: at least one named "
                                      "capture must be supplied"),
    ('{app="a"} | pattern "no captures"', "parse error at line 1, col 21: at least one capture"),
    ('{app="a"} | pattern "<a><b>"', "parse error at line 1, col 21: consecutive capture"),
    ("{}", EMPTY),
    ('{app=""}', EMPTY),
    ('{app!="x"}', EMPTY),
    ('{app=~".*"}', EMPTY),
    ('{app="a"} | unwrap x', "parse error at line 1, col 13: syntax error: unexpected"),
    ('count_over_time({app="a"})', "parse error at line 1, col 26: syntax error: unexpected ), "
                                   "expecting ["),
    ('count_over_time({app="a"}[5m]) by (x)',
     "parse error : grouping not allowed for count_over_time aggregation"),
    ('sum_over_time({app="a"}[5m])', "parse error : invalid aggregation sum_over_time without "
                                     "unwrap"),
    ('count_over_time({app="a"} | unwrap x [5m])',
     "parse error : invalid aggregation count_over_time with unwrap"),
    ('sum_over_time({app="a"} | unwrap x [5m]) by (x)',
     "parse error : grouping not allowed for sum_over_time aggregation"),
    ('absent_over_time({app="a"}[5m]) by (x)', "parse error : grouping not allowed for "
                                               "absent_over_time aggregation"),
    ('rate({app="a"}[5m]) by (x)', "parse error : grouping not allowed for rate aggregation"),
    ('rate_counter({app="a"} | unwrap x [5m]) by (x)', "parse error : grouping not allowed"),
    ('-sum(rate({app="a"}[5m]))', "parse error at line 1, col 2: syntax error: unexpected "),
    ('-(1)', "parse error at line 1, col 2: syntax error: unexpected ("),
    ('{app="a"} + 1', "parse error at line 1, col 11: syntax error: unexpected +"),
    ('1 + {app="a"}', "parse error at line 1, col 5: syntax error: unexpected {"),
    ('1 and 2', "parse error : unexpected literal for left leg of logical/set binary"),
    ('sum(rate({a="b"}[1m])) + bool 1', "parse error at line 1, col 26: bool modifier can "
                                        "only be used on comparison operators"),
    ('topk(rate({a="b"}[1m]))', "parse error at line 1, col 6: syntax error: unexpected"),
    ('topk(1.5, rate({a="b"}[1m]))', "parse error at line 1, col 6: invalid parameter for topk"),
    ("foo(1)", "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER"),
    ('sum by (a) (rate({a="b"}[1m])) by (b)', "parse error at line 1, col 32: syntax error"),
    ('{app="a"} | line_format "{{.a"', "parse error at line 1, col 25: invalid template"),
    ('{app="a"} | line_format "{{ nosuch .a }}"', "parse error at line 1, col 25: invalid "
                                                  "template"),
    ('{app="a"} | json x="a..b["', "parse error at line 1, col 18: invalid json path"),
    ('{app="a"} |= "unterminated', "parse error at line 1, col 14: literal not terminated"),
    ('{app="a"}[5m]', "parse error at line 1, col 10: syntax error: unexpected ["),
    ('rate({app="a"}[5])', "parse error at line 1, col 16: syntax error: unexpected NUMBER"),
    ('{app="a"} | x > "str"', "parse error at line 1, col 17: syntax error: unexpected STRING"),
    ('{app="a"} | x =~ 5', "parse error at line 1, col 18: syntax error: unexpected NUMBER"),
    ('{app="a"} | logfmt --bogus', "parse error at line 1, col 20: syntax error: unexpected"),
    ('label_replace(rate({a="b"}[1m]), "d", "r", "s", "((")', "parse error : invalid regex"),
    ('{a="b"} @ 5', "parse error at line 1, col 9: syntax error: unexpected character"),
    ('{app="a"} |= ip("not-an-ip")', "parse error at line 1, col 11: invalid ip filter"),
    ('{app="a"} | x = ip("10.0.0.300")', "parse error at line 1, col 17: invalid ip filter"),
    ("", "parse error at line 1, col 1: syntax error: unexpected $end"),
    ("# only a comment", "parse error at line 1, col 17: syntax error: unexpected $end"),
    ('sum(rate({a="b"}[1m])) by', "parse error at line 1, col 26: syntax error: unexpected $end"),
    ('quantile_over_time({a="b"} | unwrap x [1m])', "parse error at line 1, col 20: syntax "
                                                    "error: unexpected {, expecting NUMBER"),
    ('vector("a")', "parse error at line 1, col 8: syntax error: unexpected STRING"),
    ('{a="b"} | json | unwrap x', "parse error at line 1, col 18: syntax error: unexpected"),
    ('rate({a="b"} | unwrap x | json [1m])', "parse error at line 1, col 27: syntax error"),
]


@pytest.mark.parametrize("query,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_parse_errors(query: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(query)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, QueryError)


def test_selector_and_filters_ast() -> None:
    e = parse('{app="a", env=~"p.*"} |= "x" or "y" != "z" | json | status >= 500')
    assert isinstance(e, LogExpr)
    assert e.matchers == (Matcher("app", "=", "a"), Matcher("env", "=~", "p.*"))
    assert e.stages[0] == LineFilter("|=", ("x", "y"))
    assert e.stages[1] == LineFilter("!=", ("z",))
    assert e.stages[2] == JsonParser()
    assert e.stages[3] == LabelFilter(LabelCompare("status", ">=", "number", "500", 500.0))


def test_label_filter_precedence() -> None:
    e = parse('{a="b"} | x="1" or y="2" and z="3"')
    assert isinstance(e, LogExpr)
    f = e.stages[0]
    assert isinstance(f, LabelFilter) and isinstance(f.expr, LabelBinary)
    assert f.expr.op == "or"
    assert isinstance(f.expr.right, LabelBinary) and f.expr.right.op == "and"


def test_typed_label_values() -> None:
    e = parse('{a="b"} | d > 1.5s and s <= 10KiB and n != -3 and t == 2h30m')
    assert isinstance(e, LogExpr)
    vals: list[LabelCompare] = []

    def walk(x: object) -> None:
        if isinstance(x, LabelBinary):
            walk(x.left)
            walk(x.right)
        else:
            assert isinstance(x, LabelCompare)
            vals.append(x)

    st = e.stages[0]
    assert isinstance(st, LabelFilter)
    walk(st.expr)
    assert [(v.kind, v.value) for v in vals] == [
        ("duration", 1.5), ("bytes", 10240.0), ("number", -3.0), ("duration", 9000.0)]


def test_logfmt_flags_and_params() -> None:
    e = parse('{a="b"} | logfmt --strict --keep-empty x, y="z"')
    assert isinstance(e, LogExpr)
    assert e.stages[0] == LogfmtParser(True, True, (("x", "x"), ("y", "z")))


def test_metric_ast() -> None:
    e = parse('quantile_over_time(0.99, {a="b"} | json | unwrap duration(d) | __error__="" '
              '[5m] offset 1h) by (x)')
    assert isinstance(e, RangeAggregation)
    assert e.param == 0.99 and e.grouping == Grouping(("x",))
    assert e.range.range_ns == 300 * 10**9 and e.range.offset_ns == 3600 * 10**9
    assert e.range.unwrap == Unwrap("d", "duration", (
        LabelFilter(LabelCompare("__error__", "=", "string", "")),))
    e2 = parse('sum without (a) (count_over_time({a="b"}[1m]))')
    e3 = parse('sum(count_over_time({a="b"}[1m])) without (a)')
    assert e2 == e3 and isinstance(e2, VectorAggregation) and e2.grouping == Grouping(("a",),
                                                                                      True)
    assert parse('count_over_time({a="b"}[1m] |= "x")') == parse(
        'count_over_time({a="b"} |= "x" [1m])')


def test_binary_precedence_and_modifiers() -> None:
    e = parse("1 + 2 * 3 ^ 2 ^ 2")
    assert e == BinaryOp("+", Literal(1), BinaryOp("*", Literal(2), BinaryOp(
        "^", Literal(3), BinaryOp("^", Literal(2), Literal(2)))))
    assert parse("1 - 2 - 3") == BinaryOp("-", BinaryOp("-", Literal(1), Literal(2)), Literal(3))
    m = parse('sum by (a) (rate({a="b"}[1m])) > bool on (a) group_left (c) '
              'sum by (a) (rate({a="c"}[1m]))')
    assert isinstance(m, BinaryOp) and m.return_bool
    assert m.matching == VectorMatching(True, ("a",), "group_left", ("c",))
    s = parse('rate({a="b"}[1m]) or rate({a="c"}[1m]) and rate({a="d"}[1m])')
    assert isinstance(s, BinaryOp) and s.op == "or"


def test_comments_and_raw_strings() -> None:
    e = parse('{app="a"} # the app\n|= `C:\\path` # raw')
    assert isinstance(e, LogExpr) and e.stages == (LineFilter("|=", ("C:\\path",)),)


def test_parse_selector() -> None:
    assert parse_selector('{a="b", c!~"d"}') == [Matcher("a", "=", "b"), Matcher("c", "!~", "d")]
    assert parse_selector("{}", allow_empty=True) == []
    with pytest.raises(ParseError):
        parse_selector("{}")
    with pytest.raises(ParseError):
        parse_selector('{a="b"} |= "x"')


ROUND_TRIP = [
    '{app="a"}',
    '{app="a", env!="b", x=~"y.*", z!~"w"}',
    '{app="a"} |= "x" |~ "y" != "z" !~ "w" |> "<_> a" !> "b <_>"',
    '{app="a"} |= "a" or "b" != "c" or "d"',
    '{app="a"} |= ip("10.0.0.0/8") != ip("10.0.0.1-10.0.0.9")',
    '{app="a"} | json first="a.b[0]", x, y="[\\"k k\\"].z"',
    '{app="a"} | logfmt --strict --keep-empty a, b="c"',
    '{app="a"} | regexp "(?P<x>\\\\d+)" | pattern "<a> <_>" | unpack | decolorize',
    '{app="a"} | x > 10 and y < 1.5 or z = "q"',
    '{app="a"} | x > 10 and (y < 1.5 or z = "q")',
    '{app="a"} | x >= 10ms, y != 5KB, z == -3',
    '{app="a"} | addr = ip("192.168.0.0/16") | __error__ = ""',
    '{app="a"} | line_format "{{.a}}\\n{{ .b | ToUpper }}" | label_format a=b, c="{{.d}}"',
    '{app="a"} | drop a, b="c", d=~"e" | keep f, g!="h"',
    '{app="a"} |= "tab\\there \\"quoted\\" ünï \\\\ back"',
    'count_over_time({app="a"}[5m])',
    'count_over_time({app="a"} |= "x" [5m] offset 1h)',
    'count_over_time(({app="a"} | json)[1h30m])',
    'rate({app="a"}[5m] offset -5m)',
    'bytes_rate({app="a"}[90s])',
    'sum by (a, b) (rate({app="a"}[1m]))',
    'sum(rate({app="a"}[1m])) without (a)',
    'sum by () (rate({a="b"}[1m]))',
    'topk(5, sum by (x) (count_over_time({app="a"}[1m])))',
    'bottomk(3, rate({app="a"}[1m])) by (x)',
    'quantile_over_time(0.99, {app="a"} | json | unwrap duration(d) | __error__="" [5m]) by (x)',
    'avg_over_time({app="a"} | logfmt | unwrap bytes(size) [5m])',
    'sum_over_time({app="a"} | unwrap duration_seconds(d) [500ms])',
    'max_over_time({app="a"} | unwrap latency | latency > 2 [5m]) without (pod)',
    '1 + 2 * 3 ^ 2 ^ 2 - 4 / 2 % 3',
    '(1 + 2) * 3',
    '2 ^ (3 ^ 2)',
    '(2 ^ 3) ^ 2',
    '1 - (2 - 3)',
    '1 - -2',
    'sum(rate({a="b"}[1m])) > bool 5',
    'sum by (a) (rate({a="b"}[1m])) / on (a) group_left (b) sum by (a, b) (rate({a="b"}[1m]))',
    'sum by (a) (rate({a="b"}[1m])) * ignoring (c) group_right sum(rate({a="b"}[1m]))',
    'sum(rate({a="b"}[1m])) or vector(0)',
    '(sum(rate({a="b"}[1m])) or sum(rate({c="d"}[1m]))) and sum(rate({e="f"}[1m]))',
    'label_replace(rate({a="b"}[1m]), "dst", "$1", "src", "(.*)")',
    'vector(1) + 1',
    '-1.5',
    'sort_desc(sum by (a) (rate({a="b"}[1m])))',
    'rate_counter({a="b"} | unwrap x [1m])',
    'absent_over_time({a="b"}[1d])',
    'first_over_time({a="b"} | unwrap x [1w]) by (a)',
    'count_over_time({a="b"} | json | line_format "{{.x}}" | label_format y=x [1m])',
    'stddev_over_time({a="b"} | unwrap x [1m]) by (a)',
    'avg(count_over_time({a="b"}[1m])) by (a) + on () group_left count(rate({a="c"}[1m]))',
]


@pytest.mark.parametrize("query", ROUND_TRIP)
def test_format_round_trip(query: str) -> None:
    ast = parse(query)
    text = format_query(ast)
    assert parse(text) == ast
    assert format_query(parse(text)) == text  # canonical: a fixed point


@pytest.mark.parametrize("query,canonical", [
    ('{app="a"}|="x"|json|level="error"', '{app="a"} |= "x" | json | level="error"'),
    ('count_over_time( {app="a"} [ 5m ] )', 'count_over_time({app="a"}[5m])'),
    ('sum(rate({a="b"}[90s])) by (x)', 'sum by (x) (rate({a="b"}[1m30s]))'),
    ('topk(5,sum(rate({a="b"}[1m])))', 'topk(5, sum(rate({a="b"}[1m])))'),
    ('{a="b"} | x = 5', '{a="b"} | x==5'),
    ("1 + 2 * 3", "1 + 2 * 3"),
    ("(1 + 2) * 3", "(1 + 2) * 3"),
])
def test_canonical_form(query: str, canonical: str) -> None:
    assert format_query(parse(query)) == canonical


LONG = ('sum by (app) (quantile_over_time(0.99, {app="api", env="prod"} |= "GET" | json '
        '| status >= 500 | unwrap duration(duration_ms) | __error__="" [5m]) by (app)) '
        '/ on (app) sum by (app) (count_over_time({app="api"} | logfmt [5m]))')

PRETTY = """\
  sum by (app) (
    quantile_over_time(
      0.99,
      {app="api", env="prod"}
        |= "GET"
        | json
        | status>=500
        | unwrap duration(duration_ms)
        | __error__="" [5m]
    ) by (app)
  )
/ on (app)
  sum by (app) (count_over_time({app="api"} | logfmt [5m]))"""


def test_long_queries_are_split_over_lines() -> None:
    text = format_query(parse(LONG))
    assert text == PRETTY
    assert parse(text) == parse(LONG)
    assert all(len(line) <= 100 for line in text.splitlines())
