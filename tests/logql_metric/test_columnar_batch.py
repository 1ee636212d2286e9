"""Batches of blocks in the columnar engine: consecutive blocks of a unit are joined into
one array (fewer per-call costs) only when no line can fail the query, so the early 400
of a query whose lines keep `__error__` is still decided at its first bad line."""

from __future__ import annotations

import numpy as np

from sluiceway.logql import MemorySource, QueryParams, evaluate
from sluiceway.logql import _ast as A
from sluiceway.logql._columnar import batched
from sluiceway.logql._columnar_plan import plan_lines
from sluiceway.logql._exec import ExecOptions
from sluiceway.logql._parser import parse
from sluiceway.model import EntryBlock, StreamBatch

S = 1_000_000_000


def _can_fail(q: str) -> bool:
    expr = parse(f"count_over_time({{app=\"a\"}} {q} [1m])")
    assert isinstance(expr, A.RangeAggregation)
    plan = plan_lines(expr.range, A.Grouping(("level",)))
    assert plan is not None, q
    return plan.can_fail()


def test_which_pipelines_can_fail_the_query() -> None:
    for q in ['| json | __error__=""', '| logfmt | __error__=""', "| json | drop __error__",
              '|= "x" | json | status >= 400 | __error__=""',
              '| json | __error__="" | level="info"', "", '|= "x"', '| level="x"',
              '| json | __error__="" and path="/"', '| unpack | __error__=""',
              '| regexp `(?P<level>\\w+) (?P<x>.)`', '| pattern `<_> "<level> <_>"`']:
        assert not _can_fail(q), q
    for q in ["| json", "| logfmt", '| json | __error__="" | status >= 400',
              '| json | __error__!="x"', '| json | __error__="" or path="/"',
              '| status > 1',
              ]:
        assert _can_fail(q), q


def _block(lines: list[bytes], t0: int, md: bool = False) -> EntryBlock:
    ts = np.arange(t0, t0 + len(lines), dtype=np.int64)
    return EntryBlock.from_lines({"app": "a"}, ts, lines,
                                 [None] * len(lines) if md else None)


def test_batched_joins_the_selected_lines_of_consecutive_blocks() -> None:
    blocks = [_block([b"%d-%d" % (k, i) for i in range(10)], 10 * k, md=(k == 3))
              for k in range(8)]
    sel = [(b, np.arange(0, 10, 2 if k % 2 else 1, dtype=np.intp))
           for k, b in enumerate(blocks)]
    out = list(batched(iter(sel), 100))
    # 100 bytes: 34 lines of 3 bytes or more a batch; the metadata block stays alone,
    # in its place (the lines before it are handed out first: unwrapped samples keep
    # their arrival order).
    assert [len(b) for b, _ in out] == [25, 10, 30]
    assert out[1][0] is blocks[3] and out[1][0].metadata is not None
    got = [(int(t), line) for b, idx in out
           for t, line in zip(b.ts[idx].tolist(), b.take(idx).lines(), strict=True)]
    want = [(int(b.ts[i]), b.line(int(i))) for b, idx in sel for i in idx]
    assert got == want


def test_no_probe_when_no_line_can_fail() -> None:
    """With `| __error__=""` the query cannot answer 400: no series is probed for its
    first bad line first (one more block per series before)."""
    src = MemorySource(block_size=10)
    for app in "abcd":
        src.push("t", [StreamBatch({"app": app}, [k * S for k in range(30)],
                                   ['{"level":"info"}', "GET / 200", "{}"] * 10)])
    q = 'sum by (level) (count_over_time({app=~".+"} | json | __error__="" [1h]))'
    params = QueryParams(["t"], 0, 30 * S, step_ns=3600 * S,
                         options=ExecOptions(parallelism=2, split_ns=0))
    res = evaluate(src, q, params).to_loki_json()["result"]
    assert [r["metric"] for r in res] == [{}, {"level": "info"}]
    assert src.blocks_read == 12  # 3 a series


def test_unwrap_batches_only_when_no_sample_can_fail() -> None:
    """An unwrap whose errors a later filter drops (or that groups by `__error__`) joins
    its blocks into batches; one whose samples can keep `SampleExtractionErr` reads block
    by block (its 400 comes at the first bad line)."""
    from sluiceway.logql._columnar_unwrap import plan_values
    from sluiceway.logql._metric_extract import KeyMapper

    def can_fail(q: str, by: tuple[str, ...] = ("level",)) -> bool:
        expr = parse(f'sum_over_time({{app="a"}} | logfmt | unwrap dur {q} [1m])')
        assert isinstance(expr, A.RangeAggregation) and expr.range.unwrap is not None
        vp = plan_values(expr.range, KeyMapper(A.Grouping(by), "dur"))
        assert vp is not None, q
        return vp.can_fail(expr.range.unwrap)

    assert not can_fail('| __error__=""')
    assert not can_fail('| dur > 1 | __error__=""')
    assert can_fail('| __error__="" | dur > 1')  # the comparison may set LabelFilterErr
    assert not can_fail("", by=("level", "__error__"))
    assert can_fail("")
    assert can_fail('| __error__="" or level="x"')
    assert can_fail("| dur > 1")
