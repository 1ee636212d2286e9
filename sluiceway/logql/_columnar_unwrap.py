"""Columnar `unwrap`: the samples of `sum_over_time`, `quantile_over_time`, ... by labels.

The same plan and block steps as the line counts (`_columnar`), then the unwrapped label
is converted once per distinct value (`CONVERTERS`, the per-line engine's table), a value
that does not convert sets `__error__="SampleExtractionErr"`, the label filters after
`unwrap` become masks, and each series gets its (ts, value) arrays. Samples keep the
per-line engine's arrival order — series by series, blocks and lines in order — so the
window functions (sequential sums, Welford, first/last) see exactly the same sequence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sluiceway.logql import _ast as A
from sluiceway.logql._columnar import BATCH_BYTES, batched, merge_stats, unit_blocks
from sluiceway.logql._columnar_block import block_columns, group_rows
from sluiceway.logql._columnar_filter import (
    ERROR,
    SAMPLE_ERR,
    ErrCodes,
    VecFilter,
    compile_vec_filter,
    filter_names,
)
from sluiceway.logql._columnar_plan import ERROR_DETAILS, Plan, error_after, plan_lines
from sluiceway.logql._columnar_scan import Col
from sluiceway.logql._engine import QueryParams
from sluiceway.logql._exec import run_units, split_range
from sluiceway.logql._lexer import CONVERTERS
from sluiceway.logql._metric_extract import (
    KeyMapper,
    Samples,
    SeriesLimit,
    pipeline_error,
    range_pipeline,
    unwrap_sink,
)
from sluiceway.logql._metric_types import F64, I64
from sluiceway.logql._pipeline import LabelKey, LogPipeline
from sluiceway.logql._result import QueryStats
from sluiceway.logql._source import LogSource
from sluiceway.model import EntryBlock, SeriesRef

# per series key: (line index in the block, ts, value) arrays of one block
_Rows = dict[LabelKey, list[tuple[I64, I64, F64]]]


_CACHE_MAX = 1 << 16


@dataclass(slots=True)
class ValuePlan:
    lines: Plan
    label: str
    convert: Callable[[str], float | None]
    posts: list[VecFilter]
    # Values already converted, shared by the query's blocks and threads (a dict's get
    # and set are atomic): most values repeat from block to block.
    known: dict[str, float] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)  # values that do not convert

    def can_fail(self, uw: A.Unwrap) -> bool:
        """Can a sample keep `__error__` (a 400)? A value may always fail to convert;
        not when grouped by `__error__` or a filter after `unwrap` drops the errors. When
        none can, a unit joins its blocks into batches (`_columnar.batched`)."""
        err = True
        for post in uw.post_filters:
            err = error_after(post.expr, err)
        return not self.lines.preserve_error and err

    def convert_all(self, raws: list[str]) -> tuple[F64, npt.NDArray[np.bool_],
                                                      npt.NDArray[np.bool_]]:
        """(value or 0.0, has a sample: not empty, does not convert) of each raw value,
        plus one slot at the end for lines without the label."""
        got: list[float | None] = list(map(self.known.get, raws))
        for i in [i for i, x in enumerate(got) if x is None]:
            raw = raws[i]
            if not raw or raw in self.bad:
                continue
            x = self.convert(raw)
            if len(self.known) + len(self.bad) >= _CACHE_MAX:
                self.known.clear()
                self.bad.clear()
            if x is None:
                self.bad.add(raw)
            else:
                self.known[raw] = got[i] = x
        n = len(raws) + 1
        values = np.fromiter((0.0 if x is None else x for x in got), np.float64, n - 1)
        has = np.fromiter(map(bool, raws), np.bool_, n - 1)
        none = np.fromiter((x is None for x in got), np.bool_, n - 1)
        return (np.append(values, 0.0), np.append(has, False),
                np.append(has & none, False))


def plan_values(lr: A.LogRange, mapper: KeyMapper) -> ValuePlan | None:
    uw = lr.unwrap
    if uw is None or mapper.by is None:
        return None
    names = {uw.label} | set().union(*(filter_names(f.expr) for f in uw.post_filters))
    if any(n == ERROR_DETAILS or n.endswith("_extracted") for n in names):
        return None
    base = A.LogRange(lr.log, lr.range_ns, lr.offset_ns, None)
    plan = plan_lines(base, A.Grouping(tuple(sorted(mapper.by | names))))
    if plan is None or plan.without is not None:
        return None
    plan.by = tuple(sorted(mapper.by))
    plan.preserve_error = ERROR in mapper.by
    convert, _ = CONVERTERS[uw.conv or "number"]
    return ValuePlan(plan, uw.label, convert,
                     [compile_vec_filter(f.expr) for f in uw.post_filters])


def _reference_rows(pipeline: LogPipeline, mapper: KeyMapper, uw: A.Unwrap,
                    block: EntryBlock, lines: npt.NDArray[np.intp]) -> _Rows:
    """The per-line engine's samples of some lines, each tagged with its line index."""
    out: _Rows = {}
    for i in lines.tolist():
        samples = Samples()
        unwrap_sink(samples, mapper, uw)(block, np.array([i]), pipeline)
        for key, ts in samples.ts.items():
            vs = samples.values[key]
            out.setdefault(key, []).append((np.full(len(ts), i, dtype=np.int64),
                                            np.asarray(ts, dtype=np.int64),
                                            np.asarray(vs, dtype=np.float64)))
    return out


def run_block_values(vp: ValuePlan, uw: A.Unwrap, pipeline: LogPipeline,
                     mapper: KeyMapper, block: EntryBlock,
                     idx: npt.NDArray[np.intp]) -> _Rows:
    if block.metadata is not None:
        return _reference_rows(pipeline, mapper, uw, block, idx)
    if len(idx) < len(block):
        block = block.take(idx)
    env, err, alive, other, _lines = block_columns(vp.lines, block, pipeline.levels)
    col = env.get(vp.label) or Col.absent(len(block))
    values, ok_v, bad_v = vp.convert_all(col.values)
    codes = col.codes
    sample = alive & ~other & ok_v[codes]
    bad = sample & bad_v[codes] & (err == 0)
    if bad.any():
        err = err.copy()
        err[bad] = SAMPLE_ERR
    for post in vp.posts:
        sample &= post(env, err, sample)
    fallback = np.flatnonzero(alive & other)
    if not vp.lines.preserve_error:
        wrong = np.flatnonzero(sample & (err != 0))
        if len(wrong):
            first = int(wrong[0])
            _reference_rows(pipeline, mapper, uw, block, fallback[fallback < first])
            _reference_rows(pipeline, mapper, uw, block, np.array([first]))
            raise pipeline_error({ERROR: "SampleExtractionErr"})  # not reached
    out = _group_values(vp.lines, env, err, sample, block, codes, np.asarray(values))
    if len(fallback):
        for key, rows in _reference_rows(pipeline, mapper, uw, block, fallback).items():
            out.setdefault(key, []).extend(rows)
    return out


def _group_values(plan: Plan, env: dict[str, Col], err: ErrCodes,
                  sel_mask: npt.NDArray[np.bool_], block: EntryBlock, codes: I64,
                  values: F64) -> _Rows:
    out: _Rows = {}
    for key, rows in group_rows(plan, env, err, sel_mask):
        out.setdefault(key, []).append((rows.astype(np.int64), block.ts[rows],
                                        values[codes[rows]]))
    return out


@dataclass(slots=True)
class _Part:
    order: int
    rows: dict[LabelKey, list[tuple[I64, F64]]] = field(default_factory=dict)
    stats: QueryStats = field(default_factory=QueryStats)


def _unit(source: LogSource, ref: SeriesRef, order: int, lo: int, hi: int,
          lr: A.LogRange, vp: ValuePlan, mapper: KeyMapper, params: QueryParams,
          limit: SeriesLimit | None) -> Callable[[threading.Event], _Part]:
    """One series over one split: blocks from `unit_blocks` (deadline, abort and cancel
    checked between them); each block's series are counted against `max_series`."""
    assert lr.unwrap is not None
    uw = lr.unwrap
    def run(abort: threading.Event) -> _Part:
        out = _Part(order)
        pipeline = range_pipeline(lr, params, mapper)
        blocks = unit_blocks(source, ref, lo, hi, params, pipeline, abort, out.stats)
        if not vp.can_fail(uw):
            blocks = batched(blocks, BATCH_BYTES, vp.lines)
        for block, idx in blocks:
            for key, parts in run_block_values(vp, uw, pipeline, mapper, block, idx).items():
                line = np.concatenate([p[0] for p in parts])
                order_ = np.argsort(line, kind="stable")  # the block's line order
                ts = np.concatenate([p[1] for p in parts])[order_]
                vs = np.concatenate([p[2] for p in parts])[order_]
                if limit is not None:
                    limit.note_times(key, ts)
                out.rows.setdefault(key, []).append((ts, vs))
        return out

    return run


def collect_values(source: LogSource, params: QueryParams, lr: A.LogRange, lo: int,
                   hi: int, stats: QueryStats, mapper: KeyMapper,
                   limit: SeriesLimit | None) -> dict[LabelKey, tuple[I64, F64]] | None:
    """Per series (ts, value) sorted by ts (stable, arrival order kept), as
    `Samples.finish` gives them; None when the columnar engine does not apply. The
    series are counted against `limit` (the query's `max_series`) block by block."""
    opts, tenants = params.options, params.tenants
    vp = plan_values(lr, mapper) if opts.columnar else None
    if vp is None:
        return None
    refs = source.series(tenants, list(lr.log.matchers), lo, hi)
    stats.streams += len(refs)
    splits = split_range(lo, hi, opts.split_ns)
    stats.splits += len(splits)
    # Arrival order of the per-line engine: series by series, then time.
    # (and with one thread the first pipeline error is the one the per-line engine meets:
    # `run_units` raises the earliest unit's)
    units = [_unit(source, ref, r * len(splits) + k, a, b, lr, vp, mapper, params, limit)
             for r, ref in enumerate(refs) for k, (a, b) in enumerate(splits)]
    parts = []
    for part in run_units(units, opts.parallelism, opts):
        merge_stats(stats, part.stats)
        parts.append(part)
    parts.sort(key=lambda p: p.order)
    acc: dict[LabelKey, tuple[list[I64], list[F64]]] = {}
    for p in parts:
        for key, rows in p.rows.items():
            t_list, v_list = acc.setdefault(key, ([], []))
            for ts, vs in rows:
                t_list.append(ts)
                v_list.append(vs)
    out = {}
    for key, (t_list, v_list) in acc.items():
        ts = np.concatenate(t_list)
        vs = np.concatenate(v_list)
        order = np.argsort(ts, kind="stable")
        out[key] = (ts[order], vs[order])
    return out
