"""Metric query evaluation: `evaluate_metric(source, expr, params) -> QueryResult`.

Every node is evaluated over the whole step grid at once (see `_metric_types`). Range
aggregations read the source through the log engine's pipeline (`_metric_extract`);
vector aggregations, binary operators and `label_replace` work on the grid values.
Grid rules follow a real Loki (REFERENCE §9): points are aligned to the step counted
from the Unix epoch — start moved down to a multiple of the step, end up, as Loki's
query frontend does — and the default step is (end - start) / 250 whole seconds.
"""

from __future__ import annotations

import time

import numpy as np

from sluiceway.logql import _ast as A
from sluiceway.logql._columnar import count_lines
from sluiceway.logql._columnar_unwrap import collect_values
from sluiceway.logql._engine import QueryParams
from sluiceway.logql._errors import QueryError
from sluiceway.logql._limits import check_resolution, series_limit_error
from sluiceway.logql._metric_agg import aggregate, group_key, label_replace
from sluiceway.logql._metric_binop import binary
from sluiceway.logql._metric_extract import (
    BinCounts,
    KeyMapper,
    Projection,
    Samples,
    SeriesLimit,
    covered_slots,
    line_sink,
    scan,
    unwrap_sink,
)
from sluiceway.logql._metric_result import (
    matrix_of,
    scalar_matrix_of,
    scalar_of,
    vector_of,
)
from sluiceway.logql._metric_types import F64, I64, Grid, LabelKey, Scalar, Series, Value, Vec
from sluiceway.logql._metric_window_vec import over_windows
from sluiceway.logql._parser import parse
from sluiceway.logql._result import MatrixResult, QueryResult, QueryStats, VectorResult
from sluiceway.logql._source import LogSource

NS = 1_000_000_000
# Times are int64 Unix ns; no point of a grid, and no window edge, may fall outside.
EARLIEST_NS, LATEST_NS = -(2**63), 2**63 - 1
_OUT_OF_RANGE = ("the query reaches past the times Unix nanoseconds can hold (1677-09-21 to "
                 "2262-04-11): ")
# An outer `sum by (...)` may group samples already at extraction for these range ops
# (Loki's canInjectVectorGrouping): the sums are equal and far fewer series are kept.
PUSHDOWN_OPS = frozenset({"bytes_over_time", "bytes_rate", "count_over_time", "rate",
                          "sum_over_time"})
# Aggregations whose answer has one series per group that has a point: the groups seen
# while samples are gathered are already series of the answer (the series limit).
_PER_GROUP_OPS = frozenset({"sum", "avg", "min", "max", "count", "stddev", "stdvar"})


def default_step_ns(start: int, end: int) -> int:
    """Loki's default: max(floor(range seconds / 250), 1) seconds."""
    return max((end - start) // NS // 250, 1) * NS


def step_grid(params: QueryParams) -> Grid:
    start, end = params.start, params.end
    if not (EARLIEST_NS <= start <= LATEST_NS and EARLIEST_NS <= end <= LATEST_NS):
        raise QueryError(_OUT_OF_RANGE + "start or end")
    if params.instant:
        return Grid(np.array([start], dtype=np.int64), True)
    if end < start:
        raise QueryError("end timestamp must not be before start time")
    step = params.step_ns if params.step_ns is not None else default_step_ns(start, end)
    check_resolution(start, end, step)
    # Loki's query frontend moves start down and end up to a multiple of the step
    # (Go's remainder: toward zero, so a time before 1970 moves up instead).
    first = start + (-start) % step if start < 0 else start - start % step
    last = -(-end // step) * step
    if last > LATEST_NS:  # points are aligned to the step: the last may pass `end`
        raise QueryError(_OUT_OF_RANGE + "the last step after end; use a smaller step")
    return Grid(np.arange(first, last + 1, step, dtype=np.int64), False)


def windows(points: I64, lr: A.LogRange) -> tuple[I64, I64]:
    """The (start, end] of each point's range window, shifted by the offset. Where an edge
    falls outside int64 it is clamped to the limit, which no entry's time passes, so
    each window still holds exactly the entries it should (none, when wholly outside)."""
    first, last = int(points[0]), int(points[-1])  # points ascend
    if (first - lr.offset_ns - lr.range_ns >= EARLIEST_NS
            and last - lr.offset_ns <= LATEST_NS):
        ends: I64 = points - lr.offset_ns
        return ends - lr.range_ns, ends

    def clamped(values: list[int]) -> I64:
        return np.array([min(max(v, EARLIEST_NS), LATEST_NS) for v in values], dtype=np.int64)

    exact = [p - lr.offset_ns for p in points.tolist()]
    return clamped([e - lr.range_ns for e in exact]), clamped(exact)


def _identity(key: LabelKey) -> LabelKey:
    return key


def _scalar_valued(e: A.Expr) -> bool:
    """Literals joined by operators; a loop over the nodes, since a chain `1 + 1 + ...` may
    be as long as the query."""
    todo = [e]
    while todo:
        node = todo.pop()
        if isinstance(node, A.BinaryOp):
            todo += (node.left, node.right)
        elif not isinstance(node, A.Literal):
            return False
    return True


def _passed(op: A.BinaryOp, project: Projection | None,
            other_is_scalar: bool) -> Projection | None:
    """What `op` hands one operand: its own projection when the other operand is a scalar
    and `op` keeps the series (arithmetic, or a comparison with `bool`)."""
    keeps = (op.op not in A.COMPARISON_OPS or op.return_bool) and op.op not in A.SET_OPS
    return project if keeps and other_is_scalar else None


def _grouped(project: Projection, g: A.Grouping | None) -> Projection:
    return lambda key: project(group_key(key, g))


class _Evaluator:
    """Evaluates a metric expression over the grid.

    Each node gets the `Projection` from its series to the series of the answer, or None
    where that is not known while samples are gathered (vector/vector operators, filters,
    topk, label_replace); range aggregations under a known projection count the answer's
    series as they go and stop at `max_series` (`SeriesLimit`).
    """

    def __init__(self, source: LogSource, params: QueryParams, grid: Grid,
                 stats: QueryStats) -> None:
        self.source = source
        self.params = params
        self.grid = grid
        self.n = len(grid)
        self.stats = stats

    def eval(self, e: A.Expr, project: Projection | None = None) -> Value:
        if isinstance(e, A.Literal):
            return Scalar(np.full(self.n, e.value, dtype=np.float64))
        if isinstance(e, A.VectorExpr):
            return Vec([Series((), np.full(self.n, e.value, dtype=np.float64),
                               np.ones(self.n, dtype=np.bool_))])
        if isinstance(e, A.RangeAggregation):
            return self.range_agg(e, e.grouping, project)
        if isinstance(e, A.VectorAggregation):
            return aggregate(e, self.vector_agg_input(e, project), self.n)
        if isinstance(e, A.BinaryOp):
            return self.binary_chain(e, project)
        if isinstance(e, A.LabelReplace):
            return label_replace(e, self.vec(e.expr, "label_replace"))
        raise QueryError("log queries can not be used as metric expressions")

    def binary_chain(self, e: A.BinaryOp, project: Projection | None) -> Value:
        """`a + b - c ...` parses as a left-deep tree as long as the query: walk its left
        spine in a loop, so only genuine nesting (bounded by the parser) recurses. An
        operand gets the answer's projection only where its series carry through: a vector
        with a scalar keeps its series (unless a comparison or set operator filters them)."""
        spine, received = [e], [project]  # each operator and the projection it received
        while isinstance(spine[-1].left, A.BinaryOp):
            n = spine[-1]
            spine.append(n.left)  # type: ignore[arg-type]
            received.append(_passed(n, received[-1], _scalar_valued(n.right)))
        deepest = spine[-1]
        value = self.eval(deepest.left, _passed(deepest, received[-1],
                                                _scalar_valued(deepest.right)))
        for n, got in zip(reversed(spine), reversed(received), strict=True):
            value = binary(n, value, self.eval(n.right, _passed(n, got,
                                                                _scalar_valued(n.left))))
        return value

    def vec(self, e: A.Expr, what: str, project: Projection | None = None) -> Vec:
        v = self.eval(e, project)
        if not isinstance(v, Vec):
            raise QueryError(f"{what}: expected a vector expression, got a scalar")
        return v

    def vector_agg_input(self, e: A.VectorAggregation, project: Projection | None) -> Vec:
        inner_project: Projection | None = None
        if project is not None and e.op in ("sort", "sort_desc"):
            inner_project = project
        elif project is not None and e.op in _PER_GROUP_OPS:
            inner_project = _grouped(project, e.grouping)
        inner = e.expr
        if (e.op == "sum" and isinstance(inner, A.RangeAggregation)
                and inner.grouping is None and inner.op in PUSHDOWN_OPS):
            v = self.range_agg(inner, e.grouping or A.Grouping(()), inner_project)
            assert isinstance(v, Vec)
            return v
        return self.vec(inner, e.op, inner_project)

    # --- range aggregations ----------------------------------------------------------

    def range_agg(self, e: A.RangeAggregation, grouping: A.Grouping | None,
                  project: Projection | None = None) -> Vec:
        lr = e.range
        starts, ends = windows(self.grid.points, lr)
        lo, hi = min(int(starts.min()) + 1, LATEST_NS), min(int(ends.max()) + 1, LATEST_NS)
        if e.op == "absent_over_time":
            return self._absent(e, starts, ends, lo, hi)
        if lr.unwrap is None:
            return self._over_lines(e.op, lr, grouping, starts, ends, lo, hi, project)
        return self._over_values(e.op, e.param, lr, grouping, starts, ends, lo, hi, project)

    def _series_limit(self, project: Projection | None, edges: I64, starts: I64,
                      ends: I64) -> SeriesLimit | None:
        if project is None or not self.params.max_series:
            return None
        return SeriesLimit(self.params.max_series, project, edges,
                           covered_slots(edges, starts, ends))

    def _over_lines(self, op: str, lr: A.LogRange, grouping: A.Grouping | None,
                    starts: I64, ends: I64, lo: int, hi: int,
                    project: Projection | None = None) -> Vec:
        edges = np.unique(np.concatenate([ends, starts]))
        counts = BinCounts(edges, limit=self._series_limit(project, edges, starts, ends))
        want_bytes = op.startswith("bytes")
        sizes = BinCounts(edges)
        if not count_lines(self.source, self.params, lr, lo, hi, self.stats, grouping,
                           counts, sizes if want_bytes else None):
            mapper = KeyMapper(grouping, None)
            scan(self.source, self.params, lr, lo, hi, self.stats,
                 line_sink(counts, mapper, sizes if want_bytes else None), mapper)
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

    def _collect(self, lr: A.LogRange, mapper: KeyMapper, lo: int, hi: int,
                 limit: SeriesLimit | None = None,
                 ) -> dict[tuple[tuple[str, str], ...], tuple[I64, F64]]:
        assert lr.unwrap is not None
        got = collect_values(self.source, self.params, lr, lo, hi, self.stats, mapper, limit)
        if got is not None:
            return got
        samples = Samples(limit=limit)
        scan(self.source, self.params, lr, lo, hi, self.stats,
             unwrap_sink(samples, mapper, lr.unwrap), mapper)
        return samples.finish()

    def _over_values(self, op: str, param: float | None, lr: A.LogRange,
                     grouping: A.Grouping | None, starts: I64, ends: I64, lo: int, hi: int,
                     project: Projection | None = None) -> Vec:
        rng = lr.range_ns
        assert lr.unwrap is not None
        edges = np.unique(np.concatenate([ends, starts]))
        limit = self._series_limit(project, edges, starts, ends)
        deadline = self.params.deadline
        out = []
        for key, (ts, vs) in self._collect(lr, KeyMapper(grouping, lr.unwrap.label),
                                           lo, hi, limit).items():
            if deadline is not None:
                deadline.check()
            a = np.searchsorted(ts, starts, "right")
            b = np.searchsorted(ts, ends, "right")
            vals = over_windows(op, param, ts, vs, a, b, ends, rng)
            out.append(Series(key, vals, b > a))
        return Vec(out)

    def _absent(self, e: A.RangeAggregation, starts: I64, ends: I64, lo: int,
                hi: int) -> Vec:
        lr = e.range
        mapper = KeyMapper(A.Grouping(()), None)
        seen = np.zeros(self.n, dtype=np.bool_)
        if lr.unwrap is None:
            v = self._over_lines("count_over_time", lr, A.Grouping(()), starts, ends, lo, hi)
            for s in v.series:
                seen |= s.present
        else:
            for ts, _ in self._collect(lr, mapper, lo, hi).values():
                a = np.searchsorted(ts, starts, "right")
                seen |= np.searchsorted(ts, ends, "right") > a
        labels = {m.name: m.value for m in lr.log.matchers if m.op == "=" and m.value}
        for m in lr.log.matchers:
            if m.op != "=":
                labels.pop(m.name, None)
        return Vec([Series(tuple(sorted(labels.items())), np.ones(self.n), ~seen)])


def _check_series(value: Value, grid: Grid, max_series: int) -> None:
    """The answer's series past `max_series` (for what was not counted on the way)."""
    if not max_series or not isinstance(value, Vec):
        return
    n = sum(1 for s in value.series if bool(s.present[0] if grid.instant else s.present.any()))
    if n > max_series:
        raise series_limit_error(max_series)


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
    value = _Evaluator(source, params, grid, stats).eval(expr, _identity)
    _check_series(value, grid, params.max_series)
    if isinstance(value, Scalar):
        if grid.instant:
            stats.entries_returned = 1
            return QueryResult(scalar_of(value, grid), stats)
        result: MatrixResult | VectorResult = scalar_matrix_of(value, grid)
    elif grid.instant:
        result = vector_of(value, grid, _order(expr))
    else:
        result = matrix_of(value, grid)
    stats.entries_returned = len(result.samples if isinstance(result, VectorResult)
                                 else result.series)
    return QueryResult(result, stats)


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
