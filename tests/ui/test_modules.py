"""The UI's pure helpers (query text edits, completion context, line parsing), run in the
browser itself by importing the shipped ES modules, so what is tested is what is served."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.procs import ServerProcess

CASES = [
    # (module, function, args, expected)
    ("logql", "addMatcher", ['{app="a"}', "level", "error"], '{app="a", level="error"}'),
    ("logql", "addMatcher", ['{app="a", level="info"}', "level", "error"],
     '{app="a", level="error"}'),
    ("logql", "addMatcher", ['{level="info", app="a"}', "level", "info", "!="],
     '{level!="info", app="a"}'),
    ("logql", "addMatcher", ['{app="a"} |= "x{y}"', "env", "p"], '{app="a", env="p"} |= "x{y}"'),
    ("logql", "addMatcher", ['sum(rate({app="a"}[1m]))', "env", "p"],
     'sum(rate({app="a", env="p"}[1m]))'),
    ("logql", "addMatcher", ["", "app", "a"], '{app="a"}'),
    ("logql", "addMatcher", ["{}", "app", 'say "hi" \\o/'], '{app="say \\"hi\\" \\\\o/"}'),
    ("logql", "appendFilter", ['{a="b"} | json', "status", "500"],
     '{a="b"} | json | status="500"'),
    ("logql", "appendFilter", ['{a="b"}', "http.method", "GET", "logfmt"],
     '{a="b"} | logfmt | http_method="GET"'),
    ("logql", "appendFilter", ['{a="b"} # why', "x", "1"], '{a="b"} # why\n| x="1"'),
    ("logql", "isLogQuery", ['# why\n{app="a"} |= "x"'], True),
    ("logql", "isLogQuery", ['rate({app="a"}[1m])'], False),
    ("logql", "isLogQuery", ["1+1"], False),
    ("logql", "hasParser", ['{a="b"} | json'], True),
    ("logql", "hasParser", ['{a="b"} |= "| json"'], False),
    ("logql", "volumeQuery", ['{a="b"} # note', 60, "json"],
     'sum by (detected_level, level) (count_over_time({a="b"} | json [60s]))'),
    ("logql", "appendFilter", ['{a="b"}', "trace_id", "t1", None, "!="],
     '{a="b"} | trace_id!="t1"'),
    ("logql", "appendLineFilter", ['{a="b"}', "|>", 'user <_> said "hi"'],
     '{a="b"} |> "user <_> said \\"hi\\""'),
    ("logql", "selectorText", ['# c\n{a="b", c=~"d"} |= "{x}" | json'], '{a="b", c=~"d"}'),
    ("logql", "fieldCountQuery", ['{a="b"}', "method", ["json"], 3600, 10],
     'topk(10, sum by (method) (count_over_time({a="b"} | json | drop __error__, '
     '__error_details__ | method!="" [3600s])))'),
    ("logql", "fieldCountQuery", ['{a="b"}', "detected_level", None, 60],
     'sum(count_over_time({a="b"} | detected_level!="" [60s]))'),
    ("highlight", "highlightLogQL", ['sum by (a) ({b="c"} |= "x" [5m]) # n'],
     '<span class="hl-fn">sum</span> <span class="hl-k">by</span> <span class="hl-p">(</span>a'
     '<span class="hl-p">)</span> <span class="hl-p">(</span><span class="hl-p">{</span>'
     '<span class="hl-l">b</span><span class="hl-o">=</span><span class="hl-s">"c"</span>'
     '<span class="hl-p">}</span> <span class="hl-f">|=</span> <span class="hl-s">"x"</span> '
     '<span class="hl-r">[5m]</span><span class="hl-p">)</span> <span class="hl-c"># n</span>\n'),
    ("editor", "completionContext", ["{ap", 3], {"kind": "name", "from": 1, "prefix": "ap"}),
    ("editor", "completionContext", ['{app="x", ', 10], {"kind": "name", "from": 10, "prefix": ""}),
    ("editor", "completionContext", ["{app=", 5],
     {"kind": "value", "name": "app", "op": "=", "from": 5, "prefix": "", "quoted": False}),
    ("editor", "completionContext", ['{app=~"ap', 9],
     {"kind": "value", "name": "app", "op": "=~", "from": 6, "prefix": "ap", "quoted": True}),
    ("editor", "completionContext", ['{app="x"} |= "', 14], None),
    ("fields", "levelOf", [{"app": "a"}, 'ts=1 level=WARNING msg="x"'], "warn"),
    ("fields", "levelOf", [{"severity": "err"}, "whatever"], "error"),
    ("fields", "levelOf", [{}, "2026-11-23 [ERROR] disk full"], "error"),
    ("fields", "levelOf", [{}, "nothing to see"], "unknown"),
    ("fields", "levelOf", [{"detected_level": "warn", "level": "error"}, "ERROR x"], "warn"),
    ("fields", "levelOf", [{"detected_level": "notice"}, "ERROR x"], "unknown"),
    ("fields", "entryFields", [{"labels": {"level": "info"}, "line": '{"level":"warn","a b":1}',
                                "extra": {"structuredMetadata": {"detected_level": "info"},
                                          "parsed": {"a_b": "1"}}}],
     [{"kind": "label", "name": "level", "value": "info"},
      {"kind": "metadata", "name": "detected_level", "value": "info"},
      {"kind": "parsed", "name": "a_b", "value": "1"},
      {"kind": "json", "name": "level_extracted", "value": "warn"}]),
    ("fields", "parseFields", ['{"a":{"b":1},"msg":"hi"}'],
     {"format": "json", "fields": [["a_b", "1"], ["msg", "hi"]]}),
    ("fields", "parseFields", ['level=info msg="a \\"quoted\\" word" n=3'],
     {"format": "logfmt", "fields": [["level", "info"], ["msg", 'a "quoted" word'], ["n", "3"]]}),
    ("histogram", "pickStep", [0, 3600_000], 60),
    ("histogram", "pickStep", [0, 7 * 86400_000], 10800),
    ("pipeline", "fillOf", [{"depth": 5, "capacity": 10, "bytes": 900, "max_bytes": 1000}], 0.9),
    # what waits on disk counts: a backlog is never an empty queue
    ("pipeline", "fillOf", [{"depth": 0, "capacity": 10, "spill_bytes": 300,
                             "spill_max_bytes": 1000}], 0.3),
    ("pipeline", "memoryFillOf", [{"depth": 0, "capacity": 10, "spill_bytes": 300,
                                   "spill_max_bytes": 1000}], 0),
    ("pipeline", "diskLinesOf", [{"spill_lines": 42}], 42),
    # worst first: blocking or dropping, backend down, spilling (and the amber words),
    # stale, ok
    ("pipeline", "rankOf", ["DROPPING"], 0), ("pipeline", "rankOf", ["BLOCKING"], 0),
    ("pipeline", "rankOf", ["BACKEND DOWN"], 1), ("pipeline", "rankOf", ["SPILLING"], 2),
    ("pipeline", "rankOf", ["DRAINING SPILL"], 2), ("pipeline", "rankOf", ["FILLING"], 2),
    ("pipeline", "rankOf", ["STALE"], 3), ("pipeline", "rankOf", ["OK"], 4),
    ("pipeline", "lostWindowText", [{"lines": {"lost": 12345},
                                     "lost_recent": {"5m": 40, "60m": 1200}}],
     "40 / 1200 in the last 5 / 60 min · 12.3k since it started"),
    ("pipeline", "lostWindowText", [{"lines": {"lost": 3}}], ""),  # an older server
    # Grafana's dedup modes, consecutive lines only
    ("logview", "dedupKey", ["at 2026-01-02T03:04:05.678+01:00 took 5ms", "exact"],
     "at  took 5ms"),
    ("logview", "dedupKey", ["took 15ms", "numbers"], "took ms"),
    ("logview", "dedupKey", ['user="ann" id=3', "signature"], '="" ='),
    ("logview", "dedupRows", [[{"line": "a 1"}, {"line": "a 2"}, {"line": "b"}, {"line": "a 3"}],
                              "numbers"],
     [{"line": "a 1", "duplicates": 1}, {"line": "b", "duplicates": 0},
      {"line": "a 3", "duplicates": 0}]),
    ("logview", "dedupRows", [[{"line": "a"}, {"line": "a"}], "none"],
     [{"line": "a", "duplicates": 0}, {"line": "a", "duplicates": 0}]),
    ("logview", "prettyJson", ['{"a":1,"b":[true,null]}'],
     '{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ]\n}'),
    ("logview", "prettyJson", ["{not json}"], None),
    ("logview", "prettyJson", ['"a string"'], None),
    ("logview", "rfc3339Nano", ["1700000000123456789", True], "2023-11-14T22:13:20.123456789Z"),
    ("logview", "linesAsText", [[{"tsNs": "1700000000000000001", "labels": {"b": "2", "a": "1"},
                                  "line": "x\ty", "duplicates": 2}], True],
     '2023-11-14T22:13:20.000000001Z\t{a="1", b="2"}\tx\ty\t(+2 duplicates)\n'),
]


@pytest.fixture(scope="module")
def blank(browser: Any, ui_server: ServerProcess) -> Any:
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.goto(f"{ui_server.url}/#/pipeline")
    yield pg
    ctx.close()


@pytest.mark.parametrize(("module", "fn", "args", "expected"), CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_helper(blank: Any, module: str, fn: str, args: list[Any], expected: Any) -> None:
    got = blank.evaluate(
        "async ([m, f, a]) => (await import(`./js/${m}.js`))[f](...a) ?? null",
        [module, fn, args])
    assert got == expected, f"{fn}({json.dumps(args)[1:-1]})"
