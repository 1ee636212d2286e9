"""Query evaluation: parse, dispatch log vs metric, and the lazy k-way merge of series.

Each matched series becomes a lazy iterator (blocks pulled one at a time, filtered as a
whole, then staged line by line); `heapq.merge` interleaves them by time in `direction`
order and the result loop stops after `limit` entries, so no further blocks are read.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from sluiceway.logql import _ast as A
from sluiceway.logql._errors import INSTANT_LOG_QUERY, METRIC_NOT_SUPPORTED, QueryError
from sluiceway.logql._exec import ExecOptions
from sluiceway.logql._levels import LevelRules
from sluiceway.logql._limits import DEFAULT_MAX_LINE_SIZE, Deadline
from sluiceway.logql._parser import parse
from sluiceway.logql._pipeline import LabelKey, LogPipeline, Processed, selected_blocks
from sluiceway.logql._result import Extra, QueryResult, QueryStats, Stream, StreamsResult
from sluiceway.logql._source import LogSource
from sluiceway.model import SeriesRef, format_labels


@dataclass(slots=True)
class QueryParams:
    """One query request; times are Unix ns, the range is [start, end).

    The limits: `max_series` stops a metric query as soon as its answer would hold more
    series (0: no limit); `max_line_size` caps what a template may write (bytes);
    `deadline` stops the query with `QueryTimeout` once it has passed. With `levels`,
    entries carry `detected_level` (Loki's `discover_log_levels`): log queries always,
    metric queries where the label can reach the answer or a stage names it. `options`
    says how the work runs (threads, time splits, cancel flag, bytes read, results cache);
    every engine path (per-line and columnar) honours the limits and levels above.
    """

    tenants: list[str]
    start: int
    end: int
    limit: int = 100
    direction: str = "backward"
    step_ns: int | None = None
    interval_ns: int | None = None
    instant: bool = False
    categorize_labels: bool = False
    max_series: int = 0
    max_line_size: int = DEFAULT_MAX_LINE_SIZE
    deadline: Deadline | None = None
    levels: LevelRules | None = None
    options: ExecOptions = field(default_factory=ExecOptions)


MetricEvaluator = Callable[[LogSource, A.Expr, QueryParams, QueryStats], QueryResult]


def _no_metrics(source: LogSource, expr: A.Expr, params: QueryParams,
                stats: QueryStats) -> QueryResult:
    raise QueryError(METRIC_NOT_SUPPORTED)


_metric_evaluator: MetricEvaluator = _no_metrics


def register_metric_evaluator(fn: MetricEvaluator) -> MetricEvaluator:
    """Install the evaluator for metric expressions; returns the one it replaces."""
    global _metric_evaluator
    previous, _metric_evaluator = _metric_evaluator, fn
    return previous


def evaluate(source: LogSource, query: str | A.Expr, params: QueryParams) -> QueryResult:
    """Evaluate a LogQL query; raises `QueryError` (HTTP 400) for bad queries or params."""
    started = time.perf_counter()
    expr = parse(query) if isinstance(query, str) else query
    if params.direction not in ("forward", "backward"):
        raise QueryError(f"invalid direction {params.direction!r}")
    stats = QueryStats()
    if isinstance(expr, A.LogExpr):
        if params.instant:
            raise QueryError(INSTANT_LOG_QUERY)
        result = _eval_logs(source, expr, params, stats)
    else:
        result = _metric_evaluator(source, expr, params, stats)
    stats.exec_time = time.perf_counter() - started
    result.stats = stats
    return result


def series_entries(source: LogSource, ref: SeriesRef, pipeline: LogPipeline, start: int,
                   end: int, direction: str, stats: QueryStats) -> Iterator[Processed]:
    """Processed entries of one series in `direction` order, pulling blocks lazily."""
    for item in _series_items(source, ref, pipeline, start, end, direction, stats):
        if item is not None and not isinstance(item, int):
            yield item


def _series_items(source: LogSource, ref: SeriesRef, pipeline: LogPipeline, start: int,
                  end: int, direction: str, stats: QueryStats,
                  pool: Executor | None = None) -> Iterator[Processed | int]:
    """Entries, each block followed by its edge timestamp (an int): the series' later
    blocks hold nothing beyond that edge, which lets the merge leave them unread."""
    reverse = direction == "backward"
    for block, idx in selected_blocks(source, ref, pipeline, start, end, direction, stats,
                                      pool):
        yield from pipeline.process(block, idx, reverse)
        yield int(block.ts[0] if reverse else block.ts[-1])


def _keyed(items: Iterator[Processed | int], tie: tuple[str, str],
           reverse: bool) -> Iterator[tuple[Any, ...]]:
    """Heap keys: time in direction order, then the series (like Loki), then sequence.

    A block edge becomes a marker keyed at the edge time and ordered before entries of
    the same time, so the merge pulls the series' next block only once everything else
    it holds is further along than that edge.
    """
    entry_tie, marker_tie = (1, *tie), (0, *tie)
    for seq, item in enumerate(items):
        if isinstance(item, int):
            yield (-item if reverse else item, marker_tie, seq, None)
        else:
            yield (-item[0] if reverse else item[0], entry_tie, seq, item)


def _eval_logs(source: LogSource, expr: A.LogExpr, params: QueryParams,
               stats: QueryStats) -> QueryResult:
    refs = source.series(params.tenants, list(expr.matchers), params.start, params.end)
    stats.streams = len(refs)
    pipeline = LogPipeline(expr.stages, params.categorize_labels, params.max_line_size,
                           params.deadline, params.levels)
    reverse = params.direction == "backward"
    # Several threads filter the series' next blocks while the merge consumes them.
    par = params.options.parallelism
    with ThreadPoolExecutor(par, "query-filter") if par > 1 else nullcontext() as pool:
        return _merge_logs(source, refs, pipeline, params, stats, reverse, pool)


def _merge_logs(source: LogSource, refs: list[SeriesRef], pipeline: LogPipeline,
                params: QueryParams, stats: QueryStats, reverse: bool,
                pool: Executor | None) -> QueryResult:
    iters = [
        _keyed(_series_items(source, ref, pipeline, params.start, params.end,
                             params.direction, stats, pool),
               (format_labels(ref.labels), ref.tenant), reverse)
        for ref in refs
    ]
    groups: dict[LabelKey, list[tuple[int, str, Extra | None]]] = {}
    interval = params.interval_ns or 0
    last: int | None = None
    count = 0
    if params.limit > 0:
        for _, _, _, entry in heapq.merge(*iters):
            if entry is None:  # a block edge: nothing to return
                continue
            ts, line, key, extra = entry
            if interval and last is not None and (
                    ts > last - interval if reverse else ts < last + interval):
                continue
            groups.setdefault(key, []).append((ts, line, extra))
            last = ts
            count += 1
            if count >= params.limit:
                break
    stats.entries_returned = count
    streams = sorted(((format_labels(dict(k)), k, v) for k, v in groups.items()),
                     key=lambda t: t[0])
    result = StreamsResult([Stream(dict(k), v) for _, k, v in streams])
    flags = ("categorize-labels",) if params.categorize_labels else ()
    return QueryResult(result, stats, flags)
