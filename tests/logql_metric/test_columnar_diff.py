"""Differential tests: the columnar engine against the per-line reference engine.

Random lines (simple and tricky JSON, logfmt, plain text, malformed and odd input) and
random queries run through both engines (`ExecOptions(columnar=False)` is the reference,
kept for exactly this); answers must be identical: counts exact, rates and byte rates
the same floats, the same `pipeline error` when lines keep `__error__`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sluiceway.logql import (
    LevelRules,
    MemorySource,
    QueryError,
    QueryParams,
    ResultsCache,
    evaluate,
)
from sluiceway.logql import _ast as A
from sluiceway.logql._columnar_plan import plan_lines
from sluiceway.logql._exec import ExecOptions
from sluiceway.logql._parser import parse
from sluiceway.model import StreamBatch

S = 1_000_000_000

_WORDS = ["info", "error", "warn", "", "a b", "10.1.2.3", "1.5s", "250ms", "x=y", "é"]
_KEYS = ["level", "path", "status", "dur", "app", "msg", "__error__", "we ird", "1st",
         "level_extracted"]


@st.composite
def json_line(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 4))
    parts = []
    for _ in range(n):
        k = draw(st.sampled_from(_KEYS))
        v = draw(st.one_of(
            st.sampled_from(_WORDS).map(lambda w: f'"{w}"'),
            st.sampled_from(["200", "404", "500", "1.50", "-3", "1e3", "12abc", "true",
                             "false", "null", "404 ", "-2.5e3", "7}", '"es\\"c"',
                             '"\\u00e9"', '{"x":"1"}',
                             "[1,2]", '"tab\\there"'])))
        sep = draw(st.sampled_from([":", ": ", " : "]))
        parts.append(f'"{k}"{sep}{v}')
    body = draw(st.sampled_from([",", ", "])).join(parts)
    line = "{" + body + "}"
    return draw(st.sampled_from([line, line, line, " " + line, line + " tail",
                                 line[:-1], line + ",", "{" + body + ",}"]))


@st.composite
def logfmt_line(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 4))
    parts = []
    for _ in range(n):
        k = draw(st.sampled_from(["level", "path", "status", "dur", "app", "msg", "a.b"]))
        v = draw(st.one_of(st.sampled_from(["info", "error", "200", "500", "1.5s", "", "x=y"]),
                           st.sampled_from(["a b", "", "q\\\"x", "k=v"]).map(lambda w: f'"{w}"')))
        parts.append(f"{k}={v}")
    parts += draw(st.lists(st.sampled_from(["bare", '"q"', "=x"]), max_size=1))
    return draw(st.sampled_from(["  ", " ", "\t"])).join(parts) if n else ""


@st.composite
def packed_line(draw: st.DrawFn) -> str:
    """What Promtail's `pack` writes (`_entry` and labels as one JSON object), and the
    shapes `| unpack` must get right around it."""
    inner = draw(st.one_of(logfmt_line(), st.sampled_from(["GET /a 200", "", "plain error",
                                                           "a é b", "x=y z"])))
    entry = draw(st.sampled_from([
        '"_entry":' + _json_str(inner), '"_entry":' + _json_str(inner),
        '"_entry" : ' + _json_str(inner), '"_entry":1', '"_entry":null',
        '"_entry":' + _json_str(inner) + ',"_entry":"twice"', '"_entry":"tab\\t\\"x"', ""]))
    parts = [entry] if entry else []
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.sampled_from(["level", "path", "status", "app", "__error__", "msg",
                                  "we ird", "_entry_x"]))
        v = draw(st.sampled_from(['"info"', '"error"', '"/p"', "500", "true", '"é"', '""',
                                  '"es\\"c"', '{"x":"1"}', "1.50", "01"]))
        parts.insert(draw(st.integers(0, len(parts))), f'"{k}":{v}')
    line = "{" + ",".join(parts) + "}"
    return draw(st.sampled_from([line, line, line, " " + line, line + " ", line[:-1]]))


def _json_str(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


LINE = st.one_of(json_line(), logfmt_line(), packed_line(),
                 st.sampled_from(["GET /a 200", "", " ", "plain error text", "[1,2]",
                                  "10.0.0.1 - - GET", "{", "null"]))

FILTERS = ['__error__=""', '__error__!=""', 'level="info"', 'level=~"i.*|e.*"',
           "status >= 300", "dur > 1s", 'status != 200 or level="error"',
           '__error__="" and status > 1', 'path!=""', 'app="a"', "status > 100 or dur < 1s",
           'msg=ip("10.0.0.0/8")', '__error__="LabelFilterErr"']


@st.composite
def query(draw: st.DrawFn) -> str:
    stages = []
    if draw(st.booleans()):
        stages.append(draw(st.sampled_from(['|= "e"', '!= "404"', '|~ "l.v"'])))
    parser = draw(st.sampled_from([
        "| json", "| logfmt", "", "| regexp `(?P<level>\\w+)=(?P<path>\\S*)`",
        "| regexp `(?P<status>\\d{3})|(?P<msg>é.)`", "| regexp `(?P<app>a)(?P<dur>b)?`",
        "| regexp `(a)(?P<level>.)`", "| regexp `(?P<level>[^\\x00]{2})$`",
        '| pattern `{"<level>":<_>,<path>}`', '| pattern `<level>=<status> <_>`',
        '| pattern `<_>"<app>"<msg>`', '| pattern `<status> <path>`',
        '| pattern `level=<level> `', "| unpack", "| unpack",
        # captures no later stage reads become non-capturing groups, unless their text
        # is ambiguous (the same `(?P<name>` in a class)
        "| regexp `(?P<level>[a-z]+)\\((?P<x>[0-9]*)\\)?`",
        "| regexp `[(?P<msg>]*(?P<msg>\\w)(?P<status>\\d)`"]))
    if parser:
        stages.append(parser)
    for f in draw(st.lists(st.sampled_from(FILTERS), max_size=2)):
        stages.append("| " + f)
    if draw(st.integers(0, 5)) == 0:
        stages.append(draw(st.sampled_from(['|= "a"', "| drop __error__", "| drop level",
                                            '|= "level=e"', '!~ "^GET"'])))
    op = draw(st.sampled_from(["count_over_time", "rate", "bytes_over_time", "bytes_rate"]))
    rng = draw(st.sampled_from(["30s", "1m", "5m"]))
    inner = f'{op}({{app=~"a|b|c"}} {" ".join(stages)} [{rng}])'
    by = draw(st.lists(st.sampled_from(["level", "path", "status", "app", "__error__",
                                        "nope"]), max_size=2, unique=True))
    outer = draw(st.sampled_from(["sum by ({}) ({})", "sum({1})",
                                  "topk(2, sum by ({}) ({}))", "{1}",
                                  "sum without ({}) ({})"]))
    return outer.format(", ".join(by), inner)


@st.composite
def unwrap_query(draw: st.DrawFn) -> str:
    stages = [draw(st.sampled_from(["| json", "| logfmt", "| regexp `(?P<status>\\d+)`",
                                    "| unpack"]))]
    for f in draw(st.lists(st.sampled_from(FILTERS), max_size=1)):
        stages.append("| " + f)
    label = draw(st.sampled_from(["status", "dur", "level"]))
    conv = draw(st.sampled_from(["", "duration", "bytes"]))
    stages.append(f"| unwrap {conv}({label})" if conv else f"| unwrap {label}")
    if draw(st.booleans()):
        stages.append(draw(st.sampled_from(['| __error__=""', "| status > 250",
                                            '| __error__!="" or status < 300'])))
    log = f'{{app=~"a|b|c"}} {" ".join(stages)} [1m]'
    by = ", ".join(draw(st.lists(st.sampled_from(["level", "path", "app", "__error__"]),
                                 max_size=2, unique=True)))
    form = draw(st.sampled_from(["by", "sum"]))
    if form == "sum":
        op = draw(st.sampled_from(["sum_over_time", "rate", "rate_counter"]))
        return f"sum by ({by}) ({op}({log}))"
    op = draw(st.sampled_from(["avg_over_time", "max_over_time", "min_over_time",
                               "first_over_time", "last_over_time", "stddev_over_time",
                               "stdvar_over_time", "quantile_over_time"]))
    arg = "0.9, " if op == "quantile_over_time" else ""
    return f"{op}({arg}{log}) by ({by})"


@st.composite
def dataset(draw: st.DrawFn) -> tuple[MemorySource, list[tuple[dict[str, str], list[str]]]]:
    src = MemorySource(block_size=draw(st.sampled_from([3, 16, 64])))
    streams = []
    for app, extra in (("a", {}), ("b", {"level": "stream"}), ("c", {"path": "/p"})):
        lines = draw(st.lists(LINE, max_size=25))
        labels = {"app": app, **extra}
        ts = [((k * 7) // 3 + 1) * S for k in range(len(lines))]  # some share a time
        src.push("t", [StreamBatch(labels, ts, lines)])
        streams.append((labels, lines))
    return src, streams


def _run(src: Any, q: str, opts: ExecOptions) -> object:
    params = QueryParams(["t"], 0, 200 * S, step_ns=20 * S, options=opts)
    try:
        return evaluate(src, q, params).to_loki_json()["result"]
    except QueryError as exc:
        return ("error", str(exc))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=dataset(), q=query(), par=st.sampled_from([1, 2]),
       split=st.sampled_from([0, 30 * S, 60 * S]))
def test_columnar_matches_reference(
        data: tuple[MemorySource, list[tuple[dict[str, str], list[str]]]], q: str, par: int,
        split: int) -> None:
    src, streams = data
    ref = _run(src, q, ExecOptions(columnar=False))
    new = _run(src, q, ExecOptions(columnar=True, parallelism=par, split_ns=split))
    event("error" if isinstance(ref, tuple) else "empty" if not ref else "series")
    if isinstance(ref, tuple) and par > 1:
        # In parallel the first error found wins: the same error, maybe another series
        # (whose error text may differ when the lines set `__error__` themselves).
        assert isinstance(new, tuple) and new[1].startswith("pipeline error"), (q, ref, new)
        if not any("__error__" in line for _, lines in streams for line in lines):
            assert new[1].split(" for series")[0] == ref[1].split(" for series")[0], \
                (q, ref, new)
        return
    assert new == ref, q
    # Through the results cache: the second run takes every split from it.
    cached = _Generational(src)
    cache = ResultsCache(1 << 20)
    for _ in range(2):
        got = _run(cached, q, ExecOptions(parallelism=par, split_ns=split or 60 * S,
                                          cache=cache, cache_freshness_ns=0))
        if not isinstance(ref, tuple):
            assert got == ref, q


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=dataset(), q=unwrap_query(), par=st.sampled_from([1, 2]),
       split=st.sampled_from([0, 30 * S]))
def test_columnar_unwrap_matches_reference(data: tuple[MemorySource, object], q: str,
                                           par: int, split: int) -> None:
    """Unwrapped samples: same values in the same order, so every window function gives
    the same floats (sums in the same order, Welford, first/last)."""
    src, _ = data
    ref = _run(src, q, ExecOptions(columnar=False))
    new = _run(src, q, ExecOptions(columnar=True, parallelism=par, split_ns=split))
    event("error" if isinstance(ref, tuple) else "empty" if not ref else "series")
    if isinstance(ref, tuple):
        assert isinstance(new, tuple) and (par > 1 or new == ref), (q, ref, new)
        return
    assert new == ref, q


@st.composite
def packed_dataset(draw: st.DrawFn) -> MemorySource:
    """Streams of mostly packed lines (a few of other kinds), for `| unpack`."""
    src = MemorySource(block_size=draw(st.sampled_from([3, 16, 64])))
    for app, extra in (("a", {}), ("b", {"level": "stream"}), ("c", {"path": "/p"})):
        lines = draw(st.lists(st.one_of(packed_line(), packed_line(), packed_line(), LINE),
                              max_size=30))
        ts = [((k * 7) // 3 + 1) * S for k in range(len(lines))]
        src.push("t", [StreamBatch({"app": app, **extra}, ts, lines)])
    return src


@st.composite
def unpack_query(draw: st.DrawFn) -> str:
    stages = ["| unpack"]
    if draw(st.booleans()):
        stages.append('| __error__=""')
    for f in draw(st.lists(st.sampled_from(['level="info"', 'path!=""', 'level=~"e.*"',
                                            'app="a"', "status > 100"]), max_size=2)):
        stages.append("| " + f)
    if draw(st.booleans()):
        stages.append(draw(st.sampled_from(['|= "e"', '!= "GET"', '|~ "level=(info|error)"',
                                            "| logfmt", "| drop level"])))
    op = draw(st.sampled_from(["count_over_time", "bytes_over_time", "rate", "bytes_rate"]))
    by = ", ".join(draw(st.lists(st.sampled_from(["level", "path", "app", "__error__", "msg"]),
                                 max_size=2, unique=True)))
    return f'sum by ({by}) ({op}({{app=~"a|b|c"}} {" ".join(stages)} [1m]))'


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(src=packed_dataset(), q=unpack_query(), par=st.sampled_from([1, 2]))
def test_columnar_unpack_matches_reference(src: MemorySource, q: str, par: int) -> None:
    """`| unpack` (Promtail's `pack` undone) on the columnar engine: exact counts and
    bytes of the unpacked lines, the same labels, the same pipeline error."""
    ref = _run(src, q, ExecOptions(columnar=False))
    new = _run(src, q, ExecOptions(columnar=True, parallelism=par))
    event("error" if isinstance(ref, tuple) else "empty" if not ref else "series")
    if isinstance(ref, tuple) and par > 1:
        # In parallel the first error found wins: another series may hold another one
        # (a packed `__error__` key is a label like any other).
        assert isinstance(new, tuple) and new[1].startswith("pipeline error"), (q, ref, new)
        return
    assert new == ref, q


class _Generational:
    """A source with a `generation`, so the results cache is used."""

    generation = 0

    def __init__(self, src: MemorySource) -> None:
        self.src = src

    def series(self, *a: Any) -> Any:
        return self.src.series(*a)

    def blocks(self, *a: Any, **kw: Any) -> Any:
        return self.src.blocks(*a, **kw)


def test_the_generated_query_shapes_use_the_columnar_engine() -> None:
    """The differential test would compare nothing new if no shape took the new path."""
    by = A.Grouping(("level",))
    for q in ['count_over_time({app="a"} | json | __error__="" [1m])',
              'rate({app=~".+"} | json [5m])',
              'bytes_rate({app="a"} |= "x" | logfmt | status >= 300 | drop __error__ [1m])',
              'rate({app="a"} | regexp `(?P<level>\\w+) (?P<x>.)` | x!="" [1m])',
              'rate({app="a"} | pattern `<_> "<method> <level> <_>"` [1m])',
              'bytes_rate({app="a"} | unpack | level="error" |= "x" [1m])']:
        expr = parse(q)
        assert isinstance(expr, A.RangeAggregation)
        assert plan_lines(expr.range, by) is not None, q
    for q in ['count_over_time({app="a"} | json | line_format "x" [1m])',
              'count_over_time({app="a"} | regexp `(a)(?P<level>.)` [1m])']:
        expr = parse(q)
        assert isinstance(expr, A.RangeAggregation)
        assert plan_lines(expr.range, by) is None, q


@settings(max_examples=200, deadline=None)
@given(w=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True),
       x=st.from_regex(r"[A-Za-z0-9_]{1,7}", fullmatch=True), same=st.booleans())
def test_ident_except_is_every_key_but_one(w: str, x: str, same: bool) -> None:
    """RE2 has no lookahead: the 'any key but w' pattern is spelled out; check it."""
    import re

    from sluiceway.logql._columnar_scan import _IDENT, ident_except

    x = w if same else x
    want = re.fullmatch(_IDENT, x) is not None and x != w
    assert (re.fullmatch(ident_except(w), x) is not None) == want


@settings(max_examples=75, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=dataset(), filt=st.sampled_from(['|= "e"', '|= "info" != "x"', '|~ "l.v"',
                                             '| json | level="info"', "", '|= "é"']),
       limit=st.sampled_from([1, 3, 100]), direction=st.sampled_from(["forward", "backward"]))
def test_log_queries_on_threads_match_one_thread(data: tuple[MemorySource, object],
                                                 filt: str, limit: int,
                                                 direction: str) -> None:
    """Log queries filter the next blocks of every series on threads: same entries."""
    src, _ = data
    q = f'{{app=~"a|b|c"}} {filt}'

    def run(par: int) -> object:
        p = QueryParams(["t"], 0, 200 * S, limit=limit, direction=direction,
                        options=ExecOptions(parallelism=par))
        return evaluate(src, q, p).to_loki_json()["result"]

    assert run(2) == run(1)


def test_pipeline_error_is_decided_at_the_first_bad_line() -> None:
    """`| json` over a JSON series listed first and a plain-text one: the 400 comes from
    the plain-text series' first block, not after reading every JSON block first."""
    src = MemorySource(block_size=10)
    n = 500
    src.push("t", [StreamBatch({"app": "a"}, [k * S for k in range(n)],
                               ['{"level":"info"}'] * n)])
    src.push("t", [StreamBatch({"app": "b"}, [k * S for k in range(n)], ["GET / 200"] * n)])
    q = 'sum by (level) (count_over_time({app=~"a|b"} | json [1h]))'
    params = QueryParams(["t"], 0, n * S, step_ns=3600 * S,
                         options=ExecOptions(parallelism=2, split_ns=0))
    try:
        evaluate(src, q, params)
    except QueryError as exc:
        assert str(exc).startswith("pipeline error: 'JSONParserErr' for series: ")
        assert 'app="b"' in str(exc)
    else:
        raise AssertionError("no pipeline error")
    # Of 100 blocks, 50 per series. The threads interleave as the machine lets them (on a
    # loaded one the JSON series' thread may run ahead for a while): what is ruled out is
    # reading every JSON block before the plain-text series' first.
    assert src.blocks_read < 50, src.blocks_read


# detected_level (Loki's discover_log_levels) on both engines: level words, JSON and
# logfmt levels, a JSON key named like the label, a stream label that decides every
# line's level, a stream with an unknown level, structured metadata that sends one.
_LEVEL_LINES = ["ERROR boom", "level=warn msg=x", '{"level":"debug","msg":"m"}',
                "info: started", "WARN disk", '{"msg":"a","lvl":"err"}', "no clue here",
                '{"detected_level":"custom","status":"500"}', "detected_level=fatal dur=1s",
                "level=Info status=404 path=/a", '{"level":"nonsense","path":"/p"}']
LEVEL_LINE = st.one_of(LINE, st.sampled_from(_LEVEL_LINES))


@st.composite
def level_dataset(draw: st.DrawFn) -> MemorySource:
    src = MemorySource(block_size=draw(st.sampled_from([3, 16, 64])))
    for app, extra in (("a", {}), ("b", {"level": "WARNING"}), ("c", {"severity": "x"}),
                       ("d", {})):
        lines = draw(st.lists(LEVEL_LINE, max_size=20))
        ts = [((k * 7) // 3 + 1) * S for k in range(len(lines))]
        md = None
        if app == "d":  # structured metadata: a level sent with some lines
            md = [draw(st.sampled_from([None, {"detected_level": "Error"}, {"lvl": "dbg"},
                                        {"trace_id": "t1"}])) for _ in lines]
        src.push("t", [StreamBatch({"app": app, **extra}, ts, lines, md)])
    return src


@st.composite
def level_query(draw: st.DrawFn) -> str:
    stages = []
    if draw(st.booleans()):
        stages.append(draw(st.sampled_from(['|= "e"', '!= "x"'])))
    parser = draw(st.sampled_from(["", "", "| json", "| logfmt",
                                   "| regexp `(?P<detected_level>[a-z]+)=`"]))
    if parser:
        stages.append(parser)
        if draw(st.booleans()):
            stages.append('| __error__=""')
    for f in draw(st.lists(st.sampled_from([
            'detected_level="error"', 'detected_level=~"info|unknown|warn"',
            'detected_level!="debug"', '__error__=""', 'status >= 400']), max_size=2)):
        stages.append("| " + f)
    if draw(st.integers(0, 4)) == 0:
        stages.append("| drop detected_level")
    op = draw(st.sampled_from(["count_over_time", "rate", "bytes_over_time"]))
    inner = f'{op}({{app=~"a|b|c|d"}} {" ".join(stages)} [1m])'
    by = draw(st.lists(st.sampled_from(["detected_level", "app", "level", "status"]),
                       max_size=2, unique=True))
    outer = draw(st.sampled_from(["sum by ({}) ({})", "sum({1})", "{1}",
                                  "sum without ({}) ({})"]))
    return outer.format(", ".join(by), inner)


@st.composite
def level_unwrap_query(draw: st.DrawFn) -> str:
    parser = draw(st.sampled_from(["| json", "| logfmt"]))
    filt = draw(st.sampled_from(["", '| detected_level!="info"', '| detected_level="error"']))
    label = draw(st.sampled_from(["status", "dur"]))
    by = draw(st.sampled_from(["detected_level", "app, detected_level", "app"]))
    return (f'sum_over_time({{app=~"a|b|c|d"}} {parser} {filt} | unwrap {label} '
            f'| __error__="" [1m]) by ({by})')


def _run_levels(src: MemorySource, q: str, opts: ExecOptions) -> object:
    params = QueryParams(["t"], 0, 200 * S, step_ns=20 * S, levels=LevelRules(),
                         options=opts)
    try:
        return evaluate(src, q, params).to_loki_json()["result"]
    except QueryError as exc:
        return ("error", str(exc))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(src=level_dataset(), q=st.one_of(level_query(), level_unwrap_query()),
       par=st.sampled_from([1, 2]), split=st.sampled_from([0, 60 * S]))
def test_columnar_detected_level_matches_reference(src: MemorySource, q: str, par: int,
                                                   split: int) -> None:
    ref = _run_levels(src, q, ExecOptions(columnar=False))
    new = _run_levels(src, q, ExecOptions(columnar=True, parallelism=par, split_ns=split))
    event("error" if isinstance(ref, tuple) else "empty" if not ref else "series")
    if isinstance(ref, tuple):
        assert isinstance(new, tuple) and (par > 1 or new == ref), (q, ref, new)
        return
    assert new == ref, q


def test_detected_level_queries_take_the_columnar_path(monkeypatch: Any) -> None:
    """Grafana's level volume (`sum by (detected_level)`), an ungrouped count and a level
    filter run columnar, with the levels the per-line engine gives."""
    from tests.logql_metric.helpers import columnar_only

    src = MemorySource(block_size=4)
    lines = ["ERROR a", "level=warn b", '{"level":"info"}', "plain", "WARN c", "ERROR d"]
    src.push("t", [StreamBatch({"app": "a"}, [(k + 1) * S for k in range(6)], lines)])
    src.push("t", [StreamBatch({"app": "b", "level": "debug"}, [S, 2 * S], ["x", "y"])])
    # A parsed `detected_level` replaces the line's own (as a parsed label does).
    src.push("t", [StreamBatch({"app": "c"}, [S, 2 * S, 3 * S], [
        '{"detected_level":"custom","level":"warn"}', '{"level":"error"}', "ERROR x_"])])
    src.push("t", [StreamBatch({"app": "d"}, [S, 2 * S], ["level=warn dur=5",
                                                           "level=error dur=7"])])
    queries = ['sum by (detected_level) (count_over_time({app=~"a|b"}[1m]))',
               'count_over_time({app=~"a|b"}[1m])',
               'sum by (app) (count_over_time({app=~"a|b"} | detected_level="error" [1m]))',
               'sum by (detected_level) (count_over_time({app="c"} | json | __error__="" '
               '[1m]))',
               'sum by (detected_level) (count_over_time({app="c"} '
               '| regexp `(?P<detected_level>[A-Z]+) x_` [1m]))',
               # a level filter after `unwrap`
               'sum by (app) (sum_over_time({app="d"} | logfmt | unwrap dur '
               '| detected_level="warn" [1m]))']
    want = [_run_levels(src, q, ExecOptions(columnar=False)) for q in queries]
    columnar_only(monkeypatch)
    got = [_run_levels(src, q, ExecOptions(columnar=True)) for q in queries]
    assert got == want

    def levels(result: Any) -> dict[str, str]:
        return {s["metric"]["detected_level"]: s["values"][0][1] for s in result}

    assert levels(want[0]) == {"error": "2", "warn": "2", "info": "1", "unknown": "1",
                               "debug": "2"}
    assert levels(want[3]) == {"custom": "1", "error": "1"}
    assert levels(want[4]) == {"ERROR": "1", "warn": "1", "error": "1"}
    assert want[5] == [{"metric": {"app": "d"}, "values": [[20, "5"], [40, "5"], [60, "5"]]}]


def test_with_time_splits_the_first_error_is_the_reference_one() -> None:
    """A series listed first whose bad line comes late, another whose bad line comes
    early: on one thread, cut into time splits, the columnar engine names the series the
    per-line engine meets first (series by series, then time), not the earliest split's.
    Hypothesis found this (the units ran split by split)."""
    src = MemorySource(block_size=16)
    src.push("t", [StreamBatch({"app": "b"}, [k * S for k in range(1, 33)],
                               ["{}"] * 31 + ['{"status":"info"}']),
                   StreamBatch({"app": "c"}, [S], ['{"status":"info"}'])])
    for q in ['avg_over_time({app=~"a|b|c"} | json | unwrap status [1m]) by ()',
              'sum(count_over_time({app=~"a|b|c"} | json | status > 100 [1m]))']:
        ref = _run(src, q, ExecOptions(columnar=False))
        assert isinstance(ref, tuple) and 'app="b"' in ref[1], ref
        assert _run(src, q, ExecOptions(columnar=True, parallelism=1, split_ns=30 * S)) \
            == ref, q


def test_unread_regexp_captures_are_not_extracted() -> None:
    """Only the captures the grouping and the filters read are extracted: the others
    become non-capturing groups, with the same matches."""
    def plan_of(q: str) -> Any:
        expr = parse(q)
        assert isinstance(expr, A.VectorAggregation)
        inner = expr.expr
        assert isinstance(inner, A.RangeAggregation)
        return plan_lines(inner.range, expr.grouping)

    plan = plan_of('sum by (method) (count_over_time({app="a"} '
                   '| regexp `"(?P<method>[A-Z]+) (?P<path>[^ ?]+)` [1m]))')
    assert plan.ops[0].pattern == '"(?P<method>[A-Z]+) (?:[^ ?]+)'
    assert plan.ops[0].groups == (("method", "method"),)
    plan = plan_of('sum by (path) (count_over_time({app="a"} '
                   '| regexp `"(?P<method>[A-Z]+) (?P<path>[^ ?]+)` | method="GET" [1m]))')
    assert plan.ops[0].pattern == '"(?P<method>[A-Z]+) (?P<path>[^ ?]+)'
    # `(?P<msg>` twice in the text (once inside a class): left as written
    plan = plan_of('sum by (status) (count_over_time({app="a"} '
                   '| regexp `[(?P<msg>]*(?P<msg>\\w)(?P<status>\\d)` [1m]))')
    assert plan.ops[0].pattern == '[(?P<msg>]*(?P<msg>\\w)(?P<status>\\d)'


def test_parallel_pipeline_error_from_lines_that_set_their_own_error() -> None:
    """Found by hypothesis: two series whose JSON lines carry their own `__error__`
    ('info' in one, 'error' in the other). On threads the first series to fail wins, so
    the error's text is the one of whichever line is found first: both are right."""
    src = MemorySource(block_size=3)
    for labels, lines in (({"app": "a"}, ["{}"]),
                          ({"app": "b", "level": "stream"},
                           ["GET /a 200", "{}", "{}", '{"__error__":"info","_entry":"x"}']),
                          ({"app": "c", "path": "/p"},
                           ['{"level":"info","__error__":"error","_entry":""}'])):
        ts = [((k * 7) // 3 + 1) * S for k in range(len(lines))]
        src.push("t", [StreamBatch(labels, ts, lines)])
    q = 'sum by () (count_over_time({app=~"a|b|c"} |= "e" | json [30s]))'
    ref = _run(src, q, ExecOptions(columnar=False))
    assert isinstance(ref, tuple) and ref[1].startswith("pipeline error: 'info'")
    for par in (1, 2):
        new = _run(src, q, ExecOptions(columnar=True, parallelism=par, split_ns=0))
        assert isinstance(new, tuple)
        assert new[1].split(" for series")[0] in ("pipeline error: 'info'",
                                                  "pipeline error: 'error'"), new
        if par == 1:
            assert new == ref


def test_a_capture_named_error_is_left_to_the_per_line_engine() -> None:
    """`| regexp` / `| pattern` capturing `__error__` set the line's error from its text
    (a later `__error__=""` drops those lines; without it they fail the query): the
    columnar engine used to ignore that capture."""
    src = MemorySource(block_size=4)
    src.push("t", [StreamBatch({"app": "a"}, [k * S for k in range(6)],
                               ["foo a", "bar b", "x", "baz c", "y y", "z"])])
    for stage in ['| regexp `(?P<__error__>\\w+) (?P<x>.)`',
                  "| pattern `<__error__> <x>`"]:
        for tail in ['| __error__=""', ""]:
            q = f'sum by (x) (count_over_time({{app="a"}} {stage} {tail} [1m]))'
            ref = _run(src, q, ExecOptions(columnar=False))
            assert _run(src, q, ExecOptions(columnar=True)) == ref, q


def test_json_numbers_before_strings_in_one_block() -> None:
    """A line whose field is a number before a line whose field is a string, in one block:
    the values are cut in line order (the columnar engine had cut the strings first and
    then the numbers, spans going backwards in the block: ArrowInvalid, a failed query)."""
    src = MemorySource(block_size=64)
    lines = ['{"path":200}', '{"path":"info","_entry":""}']
    src.push("t", [StreamBatch({"app": "a"}, [S, 3 * S], lines)])
    for q in ['sum by (path) (count_over_time({app=~"a|b|c"} | json [30s]))',
              'sum by (path) (count_over_time({app="a"} | json | __error__="" [1m]))']:
        ref = _run(src, q, ExecOptions(columnar=False))
        assert not isinstance(ref, tuple) and ref, ref
        assert _run(src, q, ExecOptions(columnar=True, parallelism=1)) == ref, q
