"""Metric query evaluation: `evaluate_metric(source, expr, params) -> QueryResult`.

Every node is evaluated over the whole step grid at once (see `_metric_types`). Range
aggregations read the source through the log engine's pipeline (`_metric_extract`);
vector aggregations, binary operators and `label_replace` work on the grid values.
Grid rules follow a real Loki (REFERENCE §9): points are aligned to the step counted
from the Unix epoch, and the default step is (end - start) / 250 whole seconds.
"""

from __future__ import annotations

import time

import numpy as np

from sluiceway.logql import _ast as A
from sluiceway.logql._columnar import count_lines
from sluiceway.logql._columnar_unwrap import collect_values
from sluiceway.logql._engine import QueryParams
from sluiceway.logql._errors import QueryError
from sluiceway.logql._metric_agg import aggregate, label_replace
from sluiceway.logql._metric_binop import binary
from sluiceway.logql._metric_extract import (
    BinCounts,
    KeyMapper,
    Samples,
    line_sink,
    scan,
    unwrap_sink,
)
from sluiceway.logql._metric_json import (
    matrix_json,
    scalar_json,
    scalar_matrix_json,
    vector_json,
)
from sluiceway.logql._metric_types import F64, I64, Grid, Scalar, Series, Value, Vec
from sluiceway.logql._metric_window import WINDOW_FNS, WindowFn, quantile_fn
from sluiceway.logql._parser import parse
from sluiceway.logql._result import QueryResult, QueryStats
from sluiceway.logql._source import LogSource

MAX_POINTS = 11_000
NS = 1_000_000_000
# An outer `sum by (...)` may group samples already at extraction for these range ops
# (Loki's canInjectVectorGrouping): the sums are equal and far fewer series are kept.
PUSHDOWN_OPS = frozenset({"bytes_over_time", "bytes_rate", "count_over_time", "rate",
                          "sum_over_time"})


def default_step_ns(start: int, end: int) -> int:
    """Loki's default: max(floor(range seconds / 250), 1) seconds."""
    return max((end - start) // NS // 250, 1) * NS


def step_grid(params: QueryParams) -> Grid:
    if params.instant:
        return Grid(np.array([params.start], dtype=np.int64), True)
    start, end = params.start, params.end
    if end < start:
        raise QueryError("end timestamp must not be before start time")
    step = params.step_ns if params.step_ns is not None else default_step_ns(start, end)
    if step <= 0:
        raise QueryError("zero or negative query resolution step widths are not accepted. "
                         "Try a positive integer")
    if (end - start) // step > MAX_POINTS:
        raise QueryError("exceeded maximum resolution of 11,000 points per timeseries. "
                         "Try decreasing the query resolution (?step=XX)")
    first = -(-start // step) * step
    last = -(-end // step) * step
    return Grid(np.arange(first, last + 1, step, dtype=np.int64), False)


class _Evaluator:
    def __init__(self, source: LogSource, params: QueryParams, grid: Grid,
                 stats: QueryStats) -> None:
        self.source = source
        self.tenants = params.tenants
        self.grid = grid
        self.n = len(grid)
        self.stats = stats
        self.options = params.options

    def eval(self, e: A.Expr) -> Value:
        if isinstance(e, A.Literal):
            return Scalar(np.full(self.n, e.value, dtype=np.float64))
        if isinstance(e, A.VectorExpr):
            return Vec([Series((), np.full(self.n, e.value, dtype=np.float64),
                               np.ones(self.n, dtype=np.bool_))])
        if isinstance(e, A.RangeAggregation):
            return self.range_agg(e, e.grouping)
        if isinstance(e, A.VectorAggregation):
            return aggregate(e, self.vector_agg_input(e), self.n)
        if isinstance(e, A.BinaryOp):
            return binary(e, self.eval(e.left), self.eval(e.right))
        if isinstance(e, A.LabelReplace):
            return label_replace(e, self.vec(e.expr, "label_replace"))
        raise QueryError("log queries can not be used as metric expressions")

    def vec(self, e: A.Expr, what: str) -> Vec:
        v = self.eval(e)
        if not isinstance(v, Vec):
            raise QueryError(f"{what}: expected a vector expression, got a scalar")
        return v

    def vector_agg_input(self, e: A.VectorAggregation) -> Vec:
        inner = e.expr
        if (e.op == "sum" and isinstance(inner, A.RangeAggregation)
                and inner.grouping is None and inner.op in PUSHDOWN_OPS):
            v = self.range_agg(inner, e.grouping or A.Grouping(()))
            assert isinstance(v, Vec)
            return v
        return self.vec(inner, e.op)

    # --- range aggregations ----------------------------------------------------------

    def range_agg(self, e: A.RangeAggregation, grouping: A.Grouping | None) -> Vec:
        lr = e.range
        ends: I64 = self.grid.points - lr.offset_ns
        lo, hi = int(ends.min()) - lr.range_ns + 1, int(ends.max()) + 1
        if e.op == "absent_over_time":
            return self._absent(e, ends, lo, hi)
        if lr.unwrap is None:
            return self._over_lines(e.op, lr, grouping, ends, lo, hi)
        fn = quantile_fn(e.param or 0.0) if e.op == "quantile_over_time" else WINDOW_FNS[e.op]
        return self._over_values(fn, lr, grouping, ends, lo, hi)

    def _over_lines(self, op: str, lr: A.LogRange, grouping: A.Grouping | None, ends: I64,
                    lo: int, hi: int) -> Vec:
        starts = ends - lr.range_ns
        edges = np.unique(np.concatenate([ends, starts]))
        counts = BinCounts(edges)
        want_bytes = op.startswith("bytes")
        sizes = BinCounts(edges)
        if not count_lines(self.source, self.tenants, lr, lo, hi, self.stats, grouping,
                           counts, sizes if want_bytes else None, self.options):
            scan(self.source, self.tenants, lr, lo, hi, self.stats,
                 line_sink(counts, KeyMapper(grouping, None), sizes if want_bytes else None))
        ie, istart = np.searchsorted(edges, ends), np.searchsorted(edges, starts)
        n_lines = counts.windows(istart, ie)
        totals = sizes.windows(istart, ie) if want_bytes else n_lines
        secs = lr.range_ns / NS
        out = []
        for key, cnt in n_lines.items():
            vals: F64 = totals[key]
            if op in ("rate", "bytes_rate"):
                vals = vals / secs
            out.append(Series(key, vals.astype(np.float64), cnt > 0))
        return Vec(out)

    def _collect(self, lr: A.LogRange, mapper: KeyMapper, lo: int,
                 hi: int) -> dict[tuple[tuple[str, str], ...], tuple[I64, F64]]:
        assert lr.unwrap is not None
        got = collect_values(self.source, self.tenants, lr, lo, hi, self.stats, mapper,
                             self.options)
        if got is not None:
            return got
        samples = Samples()
        scan(self.source, self.tenants, lr, lo, hi, self.stats,
             unwrap_sink(samples, mapper, lr.unwrap))
        return samples.finish()

    def _over_values(self, fn: WindowFn, lr: A.LogRange, grouping: A.Grouping | None,
                     ends: I64, lo: int, hi: int) -> Vec:
        rng = lr.range_ns
        assert lr.unwrap is not None
        out = []
        for key, (ts, vs) in self._collect(lr, KeyMapper(grouping, lr.unwrap.label),
                                           lo, hi).items():
            a = np.searchsorted(ts, ends - rng, "right")
            b = np.searchsorted(ts, ends, "right")
            present = b > a
            vals = np.zeros(self.n, dtype=np.float64)
            vl, tl = vs.tolist(), ts.tolist()
            for i in np.flatnonzero(present).tolist():
                s, t = int(a[i]), int(b[i])
                vals[i] = fn(vl[s:t], tl[s:t], int(ends[i]), rng)
            out.append(Series(key, vals, present))
        return Vec(out)

    def _absent(self, e: A.RangeAggregation, ends: I64, lo: int, hi: int) -> Vec:
        lr = e.range
        mapper = KeyMapper(A.Grouping(()), None)
        seen = np.zeros(self.n, dtype=np.bool_)
        if lr.unwrap is None:
            v = self._over_lines("count_over_time", lr, A.Grouping(()), ends, lo, hi)
            for s in v.series:
                seen |= s.present
        else:
            for ts, _ in self._collect(lr, mapper, lo, hi).values():
                a = np.searchsorted(ts, ends - lr.range_ns, "right")
                seen |= np.searchsorted(ts, ends, "right") > a
        labels = {m.name: m.value for m in lr.log.matchers if m.op == "=" and m.value}
        for m in lr.log.matchers:
            if m.op != "=":
                labels.pop(m.name, None)
        return Vec([Series(tuple(sorted(labels.items())), np.ones(self.n), ~seen)])


def _order(e: A.Expr) -> str:
    if isinstance(e, A.VectorAggregation) and e.op in ("sort", "sort_desc"):
        return "asc" if e.op == "sort" else "desc"
    return ""


def metric_evaluator(source: LogSource, expr: A.Expr, params: QueryParams,
                     stats: QueryStats) -> QueryResult:
    """The `MetricEvaluator` hook of the log engine: fills `stats`, returns the result."""
    if isinstance(expr, A.LogExpr):
        raise QueryError("not a metric query")
    grid = step_grid(params)
    value = _Evaluator(source, params, grid, stats).eval(expr)
    if isinstance(value, Scalar):
        if grid.instant:
            stats.entries_returned = 1
            return QueryResult("scalar", scalar_json(value, grid), stats)
        result = scalar_matrix_json(value, grid)
    elif grid.instant:
        result = vector_json(value, grid, _order(expr))
    else:
        result = matrix_json(value, grid)
    stats.entries_returned = len(result)
    return QueryResult("vector" if grid.instant else "matrix", result, stats)


def evaluate_metric(source: LogSource, expr: A.Expr | str, params: QueryParams) -> QueryResult:
    """Evaluate a metric query; raises `QueryError` (HTTP 400) as Loki would reject it."""
    started = time.perf_counter()
    if isinstance(expr, str):
        expr = parse(expr)
    stats = QueryStats()
    result = metric_evaluator(source, expr, params, stats)
    stats.exec_time = time.perf_counter() - started
    result.stats = stats
    return result
