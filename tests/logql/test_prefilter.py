"""The literal prefilter before `| json | x="v"` must never drop a line that would pass."""

from __future__ import annotations

import pytest

from sluiceway.logql import LogExpr, MemorySource, QueryParams, _pipeline, evaluate, parse
from sluiceway.model import StreamBatch

LINES = [
    '{"level":"error","msg":"plain"}',
    '{"level":"\\u0065rror","msg":"escaped e"}',          # only an escape spells it
    '{"level":"info","msg":"error in msg only"}',
    '{"level":"info","msg":"nothing"}',
    '{"ctx":{"level":"error"},"msg":"nested"}',
    'level=error msg="logfmt line"',
    'level="err\\"or" msg=quoted',
]


def _run(query: str, labels: dict[str, str], metadata: bool = False) -> list[str]:
    src = MemorySource()
    md = [{"level": "error"} if i == 3 else None for i in range(len(LINES))] if metadata \
        else None
    src.push("t", [StreamBatch(labels, list(range(1, len(LINES) + 1)), list(LINES), md)])
    res = evaluate(src, query, QueryParams(tenants=["t"], start=0, end=100, limit=100,
                                           direction="forward"))
    return [v[1] for s in res.to_loki_json()["result"] for v in s["values"]]


QUERIES = [
    '{job="a"} | json | level="error"',
    '{job="a"} | json | ctx_level="error"',
    '{job="a"} | json | level="error" or msg="nothing"',
    '{job="a"} | json | level="error", msg=~"p.*"',
    '{job="a"} | json lvl="level" | lvl="error"',
    '{job="a"} | logfmt | level="error"',
    '{job="a"} | logfmt | level="err\\"or"',
    '{job="a"} |= "e" | json | level="error"',
]
LABELS = [{"job": "a"}, {"job": "a", "level": "error"}, {"job": "a", "level": "info"}]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("labels", LABELS)
@pytest.mark.parametrize("metadata", [False, True])
def test_prefilter_changes_no_result(query: str, labels: dict[str, str], metadata: bool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with_prefilter = sorted(_run(query, labels, metadata))
    monkeypatch.setattr(_pipeline, "_parsed_value_prefilters", lambda stages: [])
    assert sorted(_run(query, labels, metadata)) == with_prefilter


def test_prefilter_is_used_and_keeps_escaped_values() -> None:
    expr = parse('{job="a"} | json | level="error"')
    assert isinstance(expr, LogExpr)
    p = _pipeline.LogPipeline(expr.stages)
    assert p.prefilters == [("level", b"error")]
    got = sorted(_run('{job="a"} | json | level="error"', {"job": "a"}))
    assert got == sorted([LINES[0], LINES[1]])


def test_prefilter_dropping_every_line_before_a_line_filter() -> None:
    """`|= "e" | json | level="info"` over a block without `info`: the prefilter leaves
    no line for the line filter (this divided by zero: an HTTP 500)."""
    from sluiceway.logql import MemorySource, QueryParams, evaluate
    from sluiceway.model import StreamBatch

    src = MemorySource()
    src.push("t", [StreamBatch({"app": "c"}, [1], ["GET /a 200"])])
    q = '{app="c"} |= "e" | json | level="info"'
    assert evaluate(src, q, QueryParams(["t"], 0, 10)).to_loki_json()["result"] == []
