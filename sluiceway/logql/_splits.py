"""A query cut into time splits that run anywhere, and their answers merged into one.

This is the split/merge seam of query fan-out (Loki's query frontend: `split_queries_by_
interval`). `query_splits` cuts a range query at the splitter's bounds (`_exec.split_range`,
multiples of the interval counted from the epoch): a log query into sub-ranges in the
query's direction, a metric range query into groups of whole steps (each step's windows
reach back over the full source, so a step's value does not depend on the split it falls
in). Each split is a complete `QueryParams` that any engine over the same data answers;
`merge_splits` turns the answers, in split order, into the unsplit query's answer.
`evaluate_splits` runs both around a `SplitRunner`: the cluster's runs splits on other
nodes, `local_runner` on this one (the same merge either way, which is what the
differential tests compare with the unsplit engine).

Limits hold for the whole query: the entries limit (the merge takes splits in direction
order until it is filled, and stops the runner), the series limit (checked on the merged
answer) and `max_query_bytes_read` (the splits' bytes read, summed). Not split: instant
queries, log queries with `interval` (its spacing runs across split bounds), and ranges
that make one split.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from sluiceway.logql import _ast as A
from sluiceway.logql._engine import QueryParams, evaluate
from sluiceway.logql._exec import split_range, too_many_bytes
from sluiceway.logql._format import format_query
from sluiceway.logql._limits import series_limit_error
from sluiceway.logql._metric import step_grid
from sluiceway.logql._parser import parse
from sluiceway.logql._result import (
    Extra,
    MatrixResult,
    MatrixSeries,
    QueryResult,
    QueryStats,
    Stream,
    StreamsResult,
)
from sluiceway.logql._source import LogSource
from sluiceway.model import format_labels


@dataclass(slots=True)
class SplitAnswer:
    """One split's answer: the result, the bytes of log lines it read (for the query's
    `max_query_bytes_read`) and the source's warnings (chunks left out)."""

    result: QueryResult
    bytes_read: int = 0
    warnings: list[str] = field(default_factory=list)


# Answers for `splits` of `query`, in the order given; the consumer may stop early (it
# closes the iterator), and the runner then drops what is still running.
SplitRunner = Callable[[str, list[QueryParams]], Iterator[SplitAnswer]]


def query_splits(expr: A.Expr, params: QueryParams) -> list[QueryParams] | None:
    """`params` cut into time splits in the order their answers merge, or None when the
    query is not split (see the module docstring)."""
    interval = params.options.split_ns
    if params.instant or interval <= 0:
        return None
    if isinstance(expr, A.LogExpr):
        if params.interval_ns:
            return None
        pieces = split_range(params.start, params.end, interval)
        if len(pieces) < 2:
            return None
        if params.direction == "backward":
            pieces.reverse()
        return [_with(params, a, b, params.step_ns) for a, b in pieces]
    grid = step_grid(params)
    points = [int(p) for p in grid.points]
    if len(points) < 2:
        return None
    step = points[1] - points[0]
    out: list[QueryParams] = []
    for a, b in split_range(points[0], points[-1] + 1, interval):
        first = points[0] + -(-(a - points[0]) // step) * step
        last = points[0] + (b - 1 - points[0]) // step * step
        if first <= last:
            out.append(_with(params, first, last, step))
    return out if len(out) > 1 else None


def _with(params: QueryParams, start: int, end: int, step: int | None) -> QueryParams:
    sub = copy.copy(params)
    sub.start, sub.end, sub.step_ns = start, end, step
    return sub


def merge_splits(expr: A.Expr, params: QueryParams,
                 answers: Iterable[SplitAnswer]) -> tuple[QueryResult, list[str]]:
    """The unsplit query's answer from its splits' answers (in `query_splits` order),
    with the warnings of all splits. Raises the query's limit errors."""
    stats = QueryStats()
    warnings: list[str] = []
    bytes_read = 0
    limit = params.options.max_bytes_read

    def each() -> Iterator[QueryResult]:
        nonlocal bytes_read
        for ans in answers:
            bytes_read += ans.bytes_read
            if limit and bytes_read > limit:
                raise too_many_bytes(bytes_read, limit)
            for w in ans.warnings:
                if w not in warnings:
                    warnings.append(w)
            _add_stats(stats, ans.result.stats)
            stats.splits += 1 if not ans.result.stats.splits else 0
            yield ans.result

    if isinstance(expr, A.LogExpr):
        result = _merge_streams(each(), params, stats)
    else:
        result = _merge_matrix(each(), params, stats)
    return result, warnings


def _add_stats(into: QueryStats, s: QueryStats) -> None:
    for f in fields(QueryStats):
        if f.name not in ("exec_time", "queue_time", "entries_returned"):
            setattr(into, f.name, getattr(into, f.name) + getattr(s, f.name))


def _merge_streams(parts: Iterator[QueryResult], params: QueryParams,
                   stats: QueryStats) -> QueryResult:
    """Splits are disjoint in time and come in direction order: each stream's entries
    are its splits' entries one after the other. The split that crosses the entries
    limit gives its first entries in the engine's order (time, then stream labels)."""
    reverse = params.direction == "backward"
    groups: dict[str, tuple[dict[str, str], list[tuple[int, str, Extra | None]]]] = {}
    count = 0
    flags: tuple[str, ...] = ()
    for part in parts:
        flags = part.encoding_flags or flags
        assert isinstance(part.data, StreamsResult)
        n = sum(len(s.entries) for s in part.data.streams)
        if count + n <= params.limit:
            for s in part.data.streams:
                key = format_labels(s.labels)
                groups.setdefault(key, (s.labels, []))[1].extend(s.entries)
            count += n
        else:
            rows = [(-ts if reverse else ts, format_labels(s.labels), i, s.labels, e)
                    for s in part.data.streams for i, e in enumerate(s.entries)
                    for ts in (e[0],)]
            rows.sort(key=lambda r: (r[0], r[1], r[2]))
            for _, key, _, labels, e in rows[:params.limit - count]:
                groups.setdefault(key, (labels, []))[1].append(e)
            count = params.limit
        if count >= params.limit:
            break
    stats.entries_returned = count
    streams = [Stream(labels, entries) for _, (labels, entries) in sorted(groups.items())]
    return QueryResult(StreamsResult(streams), stats, flags)


def _merge_matrix(parts: Iterator[QueryResult], params: QueryParams,
                  stats: QueryStats) -> QueryResult:
    """Each step is in one split: a series' points are its splits' points in order."""
    series: dict[tuple[tuple[str, str], ...], MatrixSeries] = {}
    for part in parts:
        assert isinstance(part.data, MatrixResult)
        for s in part.data.series:
            key = tuple(sorted(s.labels.items()))
            got = series.get(key)
            if got is None:
                series[key] = MatrixSeries(dict(s.labels), list(s.times), list(s.values))
            else:
                got.times.extend(s.times)
                got.values.extend(s.values)
        if params.max_series and len(series) > params.max_series:
            raise series_limit_error(params.max_series)
    out = [series[k] for k in sorted(series)]
    stats.entries_returned = len(out)
    return QueryResult(MatrixResult(out), stats)


def evaluate_splits(query: str | A.Expr, params: QueryParams,
                    run: SplitRunner) -> tuple[QueryResult, list[str]]:
    """`query` answered split by split through `run` (one split when it is not cut);
    returns the answer and the warnings of the sources that answered."""
    started = time.perf_counter()
    expr = parse(query) if isinstance(query, str) else query
    text = query if isinstance(query, str) else format_query(expr, 1 << 30)
    splits = query_splits(expr, params)
    if splits is None:
        answers = run(text, [params])
        try:
            ans = next(answers)
        finally:
            close = getattr(answers, "close", None)
            if close is not None:
                close()
        limit = params.options.max_bytes_read
        if limit and ans.bytes_read > limit:
            raise too_many_bytes(ans.bytes_read, limit)
        return ans.result, ans.warnings
    answers = run(text, splits)
    try:
        result, warnings = merge_splits(expr, params, answers)
    finally:
        close = getattr(answers, "close", None)
        if close is not None:
            close()
    result.stats.exec_time = time.perf_counter() - started
    return result, warnings


def local_runner(source_of: Callable[[QueryParams], LogSource]) -> SplitRunner:
    """Splits run here, one after the other, each on the source `source_of` gives it."""
    def run(query: str, splits: list[QueryParams]) -> Iterator[SplitAnswer]:
        expr = parse(query)
        for sub in splits:
            yield run_split(source_of(sub), expr, sub)

    return run


def run_split(source: LogSource, expr: A.Expr, sub: QueryParams) -> SplitAnswer:
    """One split on `source`: the answer, with the bytes read and warnings the source
    counted (`bytes_read`, `warnings` attributes of the source or of the sources it
    wraps: `inner`, `local`)."""
    result = evaluate(source, expr, sub)
    return SplitAnswer(result, int(_metered(source, "bytes_read") or 0),
                       list(_metered(source, "warnings") or ()))


def _metered(source: object, name: str) -> Any:
    for _ in range(8):
        value = getattr(source, name, None)
        if value is not None:
            return value
        source = getattr(source, "inner", None) or getattr(source, "local", None)
        if source is None:
            break
    return None
