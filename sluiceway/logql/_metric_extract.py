"""Turning a `LogRange` into samples: the log pipeline's entries keyed by series labels.

The log engine's `LogPipeline` does all filtering/parsing/formatting; this module only
maps each surviving entry to (series labels, ts, value), applying `unwrap`, the range's
grouping (or the one pushed down from an outer `sum`), and Loki's `__error__` rule.
Log-line aggregations (count/bytes/rate) never keep samples: each block is folded into
a histogram over the window edges of the step grid (`BinCounts`).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sluiceway.logql import _ast as A
from sluiceway.logql._engine import QueryParams
from sluiceway.logql._errors import QueryError
from sluiceway.logql._format import format_query, format_stage
from sluiceway.logql._levels import DETECTED_LEVEL, block_levels
from sluiceway.logql._lexer import CONVERTERS
from sluiceway.logql._limits import series_limit_error
from sluiceway.logql._metric_types import F64, I64, Mask
from sluiceway.logql._pipeline import LabelKey, LogPipeline, selected_blocks
from sluiceway.logql._result import QueryStats
from sluiceway.logql._source import LogSource
from sluiceway.logql._stages import (
    ERROR,
    ERROR_DETAILS,
    Row,
    RowStage,
    compile_label_filter,
)
from sluiceway.model import EntryBlock, format_labels

SAMPLE_ERR = "SampleExtractionErr"
_CACHE_MAX = 50_000


def pipeline_error(labels: dict[str, str]) -> QueryError:
    err = labels.get(ERROR, "")
    return QueryError(
        f"pipeline error: '{err}' for series: '{format_labels(labels)}'.\n"
        f"Use a label filter to intentionally skip this error. (e.g | __error__!=\"{err}\").\n"
        "To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n"
        "The label filter can also be specified after unwrap. "
        "(e.g | unwrap latency | __error__=\"\" )\n")


class KeyMapper:
    """Final labels of an entry → labels of its sample series (cached per label set).

    Like Loki: without `by`, the unwrapped label is dropped; an entry still carrying
    `__error__` fails the query unless the grouping names `__error__` explicitly.
    """

    def __init__(self, grouping: A.Grouping | None, unwrap_label: str | None) -> None:
        self.by: frozenset[str] | None = None
        self.drop: frozenset[str] = frozenset()
        if grouping is not None and not grouping.without:
            self.by = frozenset(grouping.labels)
        else:
            extra = () if unwrap_label is None else (unwrap_label,)
            self.drop = frozenset((grouping.labels if grouping else ()) + extra)
        self.preserve_error = self.by is not None and ERROR in self.by
        self._cache: dict[LabelKey, LabelKey] = {}

    def keeps(self, name: str) -> bool:
        """Whether a label of that name reaches the sample series."""
        return name in self.by if self.by is not None else name not in self.drop

    def __call__(self, key: LabelKey) -> LabelKey:
        out = self._cache.get(key)
        if out is None:
            if len(self._cache) >= _CACHE_MAX:  # parsed labels can make every key unique
                self._cache.clear()
            out = self._cache[key] = self._map(key)
        return out

    def _map(self, key: LabelKey) -> LabelKey:
        if not self.preserve_error and any(k == ERROR and v for k, v in key):
            raise pipeline_error(dict(key))
        # An empty value is no label at all in Prometheus/Loki series labels.
        if self.by is not None:
            return tuple(kv for kv in key if kv[0] in self.by and kv[1])
        return tuple(kv for kv in key if kv[0] not in self.drop and kv[1])


Projection = Callable[[LabelKey], Hashable]


def covered_slots(edges: I64, starts: I64, ends: I64) -> Mask:
    """Which slots of `edges` (a sample at t is in slot searchsorted(edges, t)) fall in
    at least one window (starts[i], ends[i]]: samples elsewhere make no point."""
    lo, hi = np.searchsorted(edges, starts), np.searchsorted(edges, ends)
    delta = np.zeros(len(edges) + 2, dtype=np.int64)
    np.add.at(delta, lo + 1, 1)
    np.add.at(delta, hi + 1, -1)
    covered: Mask = np.cumsum(delta)[: len(edges) + 1] > 0
    return covered


class SeriesLimit:
    """Counts, while samples are gathered, the series the query will answer, and stops
    it (Loki's `max_query_series` error) as soon as there are more than `limit`.

    `project` maps a sample's series to the answer's series it feeds (the grouping of
    the aggregations above it); a series counts once it has a sample inside a window.
    The columnar engine's units note their blocks' series from several threads: counting
    is under a lock.
    """

    def __init__(self, limit: int, project: Projection, edges: I64, covered: Mask) -> None:
        self.limit = limit
        self.project = project
        self.edges = edges
        self.covered = covered
        self._edges = edges.tolist()
        self._covered = covered.tolist()
        self.counted: set[LabelKey] = set()
        self.answer: set[Hashable] = set()
        self._lock = threading.Lock()

    def note(self, key: LabelKey, ts: int) -> None:
        """One sample of `key` at `ts` (callers skip keys already `counted`)."""
        if self._covered[bisect_left(self._edges, ts)]:
            self._count(key)

    def note_slots(self, key: LabelKey, slots: np.ndarray[Any, Any]) -> None:
        if key not in self.counted and bool(self.covered[slots].any()):
            self._count(key)

    def note_times(self, key: LabelKey, ts: I64) -> None:
        """Samples of `key` at the times `ts` (a block's worth)."""
        if key not in self.counted:
            self.note_slots(key, np.searchsorted(self.edges, ts, "left"))

    def _count(self, key: LabelKey) -> None:
        with self._lock:
            self.counted.add(key)
            self.answer.add(self.project(key))
            if len(self.answer) > self.limit:
                raise series_limit_error(self.limit)


@dataclass(slots=True)
class BinCounts:
    """Per series: sample count (or byte sum) per interval between sorted window edges.

    `edges` holds every window end and start; a sample at t lands in the first edge
    >= t, so a cumulative sum gives #samples <= edge and any window (a, b] is a
    difference of two cumulative values: all steps are answered at once.
    """

    edges: I64
    acc: dict[LabelKey, F64] = field(default_factory=dict)
    limit: SeriesLimit | None = None

    def add(self, key: LabelKey, ts: I64, weights: Any = None) -> None:
        if not len(ts):
            return
        slot = np.searchsorted(self.edges, ts, "left")
        if self.limit is not None:
            self.limit.note_slots(key, slot)
        hist = np.bincount(slot, weights=weights, minlength=len(self.edges) + 1)
        prev = self.acc.get(key)
        if prev is None:
            self.acc[key] = hist.astype(np.float64)
        else:
            prev += hist

    def windows(self, start_idx: I64, end_idx: I64) -> dict[LabelKey, F64]:
        """Sum over each window (edges[start_idx[i]], edges[end_idx[i]]] per series."""
        out = {}
        for key, hist in self.acc.items():
            cum = np.cumsum(hist)
            out[key] = cum[end_idx] - cum[start_idx]
        return out


@dataclass(slots=True)
class Samples:
    """Unwrapped samples per series, in arrival order until `finish` sorts them."""

    ts: dict[LabelKey, list[int]] = field(default_factory=dict)
    values: dict[LabelKey, list[float]] = field(default_factory=dict)
    limit: SeriesLimit | None = None

    def add(self, key: LabelKey, ts: int, value: float) -> None:
        if self.limit is not None and key not in self.limit.counted:
            self.limit.note(key, ts)
        t = self.ts.get(key)
        if t is None:
            t = self.ts[key] = []
            self.values[key] = []
        t.append(ts)
        self.values[key].append(value)

    def finish(self) -> dict[LabelKey, tuple[I64, F64]]:
        out = {}
        for key, t in self.ts.items():
            ts = np.asarray(t, dtype=np.int64)
            vs = np.asarray(self.values[key], dtype=np.float64)
            order = np.argsort(ts, kind="stable")
            out[key] = (ts[order], vs[order])
        return out


BlockSink = Callable[[EntryBlock, np.ndarray[Any, Any], LogPipeline], None]


def wants_levels(lr: A.LogRange, mapper: KeyMapper) -> bool:
    """`detected_level` costs work per line: worked out only where it reaches the sample
    series (`count_over_time(...)`, `sum by (detected_level)`) or a stage names it (one
    of the log pipeline, or `unwrap` and the label filters after it)."""
    if mapper.keeps(DETECTED_LEVEL):
        return True
    uw = lr.unwrap
    if uw is not None and (uw.label == DETECTED_LEVEL or any(
            DETECTED_LEVEL in format_stage(f) for f in uw.post_filters)):
        return True
    return bool(lr.log.stages) and DETECTED_LEVEL in format_query(lr.log)


def range_pipeline(lr: A.LogRange, params: QueryParams,
                   mapper: KeyMapper | None = None) -> LogPipeline:
    """The log pipeline of a range aggregation, with the query's template cap and deadline,
    and `detected_level` when `mapper`'s series keep it (see `wants_levels`; every level
    without a mapper): the per-line and the columnar engine alike."""
    levels = params.levels if mapper is None or wants_levels(lr, mapper) else None
    return LogPipeline(lr.log.stages, max_line_size=params.max_line_size,
                       deadline=params.deadline, levels=levels)


def scan(source: LogSource, params: QueryParams, lr: A.LogRange, lo: int, hi: int,
         stats: QueryStats, sink: BlockSink, mapper: KeyMapper | None = None) -> None:
    """Feed every block of the matching series in [lo, hi) to `sink` after line filters
    (with the query's template cap and deadline; `detected_level` when `mapper`'s series
    keep it, see `wants_levels`)."""
    refs = source.series(params.tenants, list(lr.log.matchers), lo, hi)
    stats.streams += len(refs)
    pipeline = range_pipeline(lr, params, mapper)
    for ref in refs:
        for block, idx in selected_blocks(source, ref, pipeline, lo, hi, "forward", stats):
            if len(idx):
                sink(block, idx, pipeline)


def line_sink(counts: BinCounts, mapper: KeyMapper, sizes: BinCounts | None = None) -> BlockSink:
    """Count surviving lines (and sum their bytes into `sizes`); whole arrays when no
    stage has to run per line."""

    def whole(block: EntryBlock, key: LabelKey, sel: np.ndarray[Any, Any]) -> None:
        ts = block.ts[sel]
        counts.add(key, ts)
        if sizes is not None:
            sizes.add(key, ts, np.diff(block.offsets)[sel])

    def sink(block: EntryBlock, idx: np.ndarray[Any, Any], pipeline: LogPipeline) -> None:
        if not pipeline.row_stages and block.metadata is None:
            base = tuple(sorted(block.labels.items()))
            levels = None if pipeline.levels is None else block_levels(pipeline.levels,
                                                                       block, idx)
            if levels is None:
                whole(block, mapper(base), idx)
            elif isinstance(levels, str):
                whole(block, mapper(pipeline.level_key(base, levels)), idx)
            else:  # one group of lines per level, each counted whole
                per_line = np.array([levels[i] for i in idx.tolist()])
                for level in np.unique(per_line).tolist():
                    whole(block, mapper(pipeline.level_key(base, level)),
                          idx[per_line == level])
            return
        ts_by: dict[LabelKey, list[int]] = {}
        size_by: dict[LabelKey, list[int]] = {}
        limit = counts.limit
        for t, line, key, _ in pipeline.process(block, idx, False):
            k = mapper(key)
            if limit is not None and k not in limit.counted:  # stop at once, mid-block
                limit.note(k, t)
            if k not in ts_by:
                ts_by[k], size_by[k] = [], []
            ts_by[k].append(t)
            if sizes is not None:  # Loki counts the line as the pipeline left it
                size_by[k].append(len(line.encode()))
        for k, t_list in ts_by.items():
            arr = np.asarray(t_list, dtype=np.int64)
            counts.add(k, arr)
            if sizes is not None:
                sizes.add(k, arr, np.asarray(size_by[k], dtype=np.float64))

    return sink


def unwrap_sink(samples: Samples, mapper: KeyMapper, uw: A.Unwrap) -> BlockSink:
    """Extract `uw.label` as a number per line; a failed conversion sets `__error__`."""
    convert, detail = CONVERTERS[uw.conv or "number"]
    posts: list[RowStage] = [compile_label_filter(f.expr) for f in uw.post_filters]
    name = uw.label

    def sink(block: EntryBlock, idx: np.ndarray[Any, Any], pipeline: LogPipeline) -> None:
        for t, line, key, _ in pipeline.process(block, idx, False):
            raw = next((v for k, v in key if k == name), "")
            if not raw:  # a line without the label gives no sample (Loki #6713)
                continue
            value = convert(raw)
            if value is not None and not posts:  # the common case: no new labels
                samples.add(mapper(key), t, value)
                continue
            labels = dict(key)
            if value is None:
                value = 0.0
                if ERROR not in labels:
                    labels[ERROR] = SAMPLE_ERR
                    labels[ERROR_DETAILS] = detail(raw)
            if posts:
                row = Row(t, line, labels, {}, {})
                if not all(p(row) for p in posts):
                    continue
                labels = row.labels
            samples.add(mapper(tuple(sorted(labels.items()))), t, value)

    return sink
