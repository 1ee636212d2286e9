"""The columnar metric engine: `count_over_time`, `rate`, `bytes_*` grouped `by` labels,
computed over whole blocks as arrays, on every core.

`_columnar_plan.plan_lines` decides whether a query shape is answered here; per block
(`_columnar_block`): the leading line filters select lines (the log engine's own
`LogPipeline.select`), the parser extracts only the labels that the filters and the
grouping name, the label filters become masks, and each group's timestamps become bucket
counts, binned over the step grid's window edges. Lines the columnar parser cannot
classify go through the per-line stages, so the answer is the reference engine's in every
case.

Work units are (time split, series); `_exec.run_units` runs them on threads — the RE2 and
numpy kernels release the GIL — and their histograms are summed (integer counts in float64:
any order gives the same bits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sluiceway.logql import _ast as A
from sluiceway.logql._columnar_block import run_block, share_classes, summary_key
from sluiceway.logql._columnar_plan import Plan, plan_lines
from sluiceway.logql._engine import QueryParams
from sluiceway.logql._exec import Aborted, run_units, split_range
from sluiceway.logql._levels import stream_level
from sluiceway.logql._metric_extract import BinCounts, KeyMapper, SeriesLimit, range_pipeline
from sluiceway.logql._metric_types import F64, I64
from sluiceway.logql._pipeline import LabelKey, LogPipeline, count_block, read_blocks
from sluiceway.logql._result import QueryStats
from sluiceway.logql._results_cache import Buckets, SplitResult
from sluiceway.logql._source import LogSource
from sluiceway.model import EntryBlock, ReadHints, SeriesRef

ERROR_DETAILS = "__error_details__"


MIN_BUCKET_NS = 1_000_000  # window edges on a coarser grid than this: bucket, cache


@dataclass(slots=True)
class _Partial:
    """One unit's lines: per series key, bucket counts (see `Buckets`)."""

    split: int
    series: dict[LabelKey, list[Buckets]] = field(default_factory=dict)
    stats: QueryStats = field(default_factory=QueryStats)


def _bucketize(ts: I64, sizes: I64 | None, g: int, edges: I64) -> Buckets:
    """Run-length counts of ts per bucket: ids are `ceil(ts / g)`, or with g == 0 the
    window-edge slots themselves (a grid too fine to bucket)."""
    ids = -(-ts // g) if g else np.searchsorted(edges, ts, "left").astype(np.int64)
    if len(ids) > 1 and not bool((ids[1:] >= ids[:-1]).all()):
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        sizes = None if sizes is None else sizes[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    counts = np.diff(np.append(starts, len(ids))).astype(np.float64)
    sz = None if sizes is None else np.add.reduceat(sizes.astype(np.float64), starts)
    return Buckets(ids[starts], counts, sz)


def _combine(parts: list[Buckets]) -> Buckets:
    if len(parts) == 1:
        return parts[0]
    ids = np.concatenate([p.ids for p in parts])
    uniq, inv = np.unique(ids, return_inverse=True)
    counts: F64 = np.bincount(inv, weights=np.concatenate([p.counts for p in parts]),
                              minlength=len(uniq)).astype(np.float64)
    sizes: F64 | None = None
    if parts[0].sizes is not None:
        sizes = np.bincount(inv, weights=np.concatenate(
            [p.sizes for p in parts if p.sizes is not None]),
            minlength=len(uniq)).astype(np.float64)
    return Buckets(uniq.astype(np.int64), counts, sizes)


def _unit(source: LogSource, ref: SeriesRef, split: int, lo: int, hi: int,
          lr: A.LogRange, plan: Plan, mapper: KeyMapper, g: int, edges: I64,
          want_sizes: bool, params: QueryParams,
          limit: SeriesLimit | None) -> Callable[[threading.Event], _Partial]:
    """One series over one split: blocks from `unit_blocks` (deadline, abort and cancel
    checked between them); the series of each block are counted against `max_series`
    (`limit`, shared by all units) before the next block is read. Blocks the source
    left unread and summarized (see `summary_grid`) count their lines in one bucket."""
    def run(abort: threading.Event) -> _Partial:
        out = _Partial(split)
        pipeline = range_pipeline(lr, params, mapper)
        grid, label_key = summary_grid(lr, plan, pipeline, ref, g)
        hints = pipeline.needs.hints(dict(ref.labels), grid, label_key)
        blocks = unit_blocks(source, ref, lo, hi, params, pipeline, abort, out.stats, hints)
        if not plan.can_fail():
            blocks = batched(blocks, BATCH_BYTES, plan)
        for block, idx in blocks:
            if hints is not None and hints.summaries:
                _summarized(plan, pipeline, ref, g, want_sizes, hints, out, limit)
            for k, ts, sizes in run_block(plan, pipeline, mapper, block, idx, want_sizes):
                if len(ts):
                    if limit is not None:
                        limit.note_times(k, ts)
                    out.series.setdefault(k, []).append(_bucketize(ts, sizes, g, edges))
        if hints is not None and hints.summaries:
            _summarized(plan, pipeline, ref, g, want_sizes, hints, out, limit)
        return out

    return run


BATCH_BYTES = 8 << 20


def batched(blocks: Iterator[tuple[EntryBlock, npt.NDArray[np.intp]]], max_bytes: int,
            plan: Plan | None = None) -> Iterator[tuple[EntryBlock, npt.NDArray[np.intp]]]:
    """The selected lines of consecutive blocks joined into blocks of about `max_bytes`
    (a block with structured metadata alone, as it came): the array kernels' fixed costs
    per call (Arrow compiles an RE2 pattern on every call) are paid once per batch, not
    once per 1 MiB block. Only for a plan whose lines cannot fail the query: its early
    400 is decided at the first bad line (`run_block`), not a batch later. With `plan`,
    a batch's line classes come from its blocks' memos, and are kept there when computed
    (`share_classes`): a warm query does not classify the lines again."""

    def join(parts: list[EntryBlock]) -> EntryBlock:
        joined = EntryBlock.concat(parts)
        if plan is not None:
            share_classes(plan, parts, joined)
        return joined

    pending: list[EntryBlock] = []
    size = 0
    for block, idx in blocks:
        if block.metadata is not None:
            if pending:  # in order: unwrapped samples keep their arrival order
                joined = join(pending)
                pending, size = [], 0
                yield joined, np.arange(len(joined), dtype=np.intp)
            yield block, idx
            continue
        part = block if len(idx) == len(block) else block.take(idx)
        pending.append(part)
        size += part.nbytes
        if size >= max_bytes:
            joined = join(pending)
            pending, size = [], 0
            yield joined, np.arange(len(joined), dtype=np.intp)
    if pending:
        joined = join(pending)
        yield joined, np.arange(len(joined), dtype=np.intp)


def summary_grid(lr: A.LogRange, plan: Plan, pipeline: LogPipeline, ref: SeriesRef,
                 g: int) -> tuple[int, str]:
    """The bucket size the source may summarize blocks on (0: none), and the rules key of
    the levels the summaries must split their counts by ("" when the series keep no
    level, or the stream labels decide it for every line): the query counts every line
    of the series (no stage at all) into buckets of `g`."""
    if g <= 0 or lr.log.stages or plan.ops:
        return 0, ""
    rules = pipeline.levels
    if rules is not None and stream_level(rules, ref.labels) is None:
        return g, rules.key
    return g, ""


def _summarized(plan: Plan, pipeline: LogPipeline, ref: SeriesRef, g: int, want_sizes: bool,
                hints: ReadHints, out: _Partial, limit: SeriesLimit | None) -> None:
    """The blocks the source summarized so far into the unit's buckets (and stats): each
    block's lines per bucket, and per level when the summary splits them by level."""
    done, hints.summaries = hints.summaries, []
    rows = [r for b in done for r in b.rows]
    if rows:
        buckets, values, lines, nbytes = zip(*rows, strict=True)
        ids_all = np.array(buckets, dtype=np.int64)
        n_all = np.array(lines, dtype=np.float64)
        b_all = np.array(nbytes, dtype=np.float64) if want_sizes else None
        names, codes = np.unique(np.array(values, dtype=str), return_inverse=True)
        for c, value in enumerate(names.tolist()):
            sel = codes == c if len(names) > 1 else slice(None)
            key = summary_key(plan, pipeline, ref.labels, value or None)
            ids, inv = np.unique(ids_all[sel], return_inverse=True)
            if limit is not None:
                limit.note_times(key, ids * g)
            out.series.setdefault(key, []).append(Buckets(
                ids, np.bincount(inv, weights=n_all[sel], minlength=len(ids)).astype(np.float64),
                None if b_all is None else
                np.bincount(inv, weights=b_all[sel], minlength=len(ids)).astype(np.float64)))
    st = out.stats
    st.blocks_summarized += len(done)
    n_lines = sum(b.n for b in done)
    st.lines_processed += n_lines
    st.post_filter_lines += n_lines
    st.bytes_processed += sum(b.nbytes for b in done)


def unit_blocks(source: LogSource, ref: SeriesRef, lo: int, hi: int, params: QueryParams,
                pipeline: LogPipeline, abort: threading.Event, st: QueryStats,
                hints: ReadHints | None = None,
                ) -> Iterator[tuple[EntryBlock, npt.NDArray[np.intp]]]:
    """A unit's blocks that have lines past the line filters, with those lines. Before
    each block: the deadline (`read_blocks`), the abort flag (another unit failed) and
    the query's cancel flag. Every block read is counted in the unit's own stats (merged
    by the caller: no shared counters). `hints` (default: the pipeline's token needs for
    the series) go to the source: what they leave unread is counted in `st`."""
    if hints is None:
        hints = pipeline.needs.hints(dict(ref.labels))
    for block in read_blocks(source, ref, lo, hi, "forward", params.deadline,
                             pipeline.prefilter, hints, st):
        if abort.is_set():
            raise Aborted()
        params.options.check()
        idx = pipeline.select(block)
        count_block(st, block, len(idx))
        if len(idx):
            yield block, idx


PROBE_LINES = 1024


def _probe(source: LogSource, ref: SeriesRef, lo: int, hi: int, lr: A.LogRange,
           plan: Plan, mapper: KeyMapper,
           params: QueryParams) -> Callable[[threading.Event], None]:
    """The first lines of a series, only to raise its pipeline error early: a query whose
    lines keep `__error__` answers 400 as soon as any series shows one, instead of after
    every series listed before it (their counts are discarded; the scan redoes them)."""
    def run(abort: threading.Event) -> None:
        pipeline = range_pipeline(lr, params, mapper)
        blocks = read_blocks(source, ref, lo, hi, "forward", params.deadline,
                             pipeline.prefilter, pipeline.needs.hints(dict(ref.labels)))
        try:
            block = next(blocks, None)
        finally:
            blocks.close()
        if block is None or abort.is_set():
            return
        head = block.slice(0, min(len(block), PROBE_LINES))
        idx = pipeline.select(head)
        if len(idx):
            run_block(plan, pipeline, mapper, head, idx, False)

    return run


def merge_stats(into: QueryStats, s: QueryStats) -> None:
    into.blocks_read += s.blocks_read
    into.blocks_skipped += s.blocks_skipped
    into.blocks_summarized += s.blocks_summarized
    into.lines_processed += s.lines_processed
    into.bytes_processed += s.bytes_processed
    into.post_filter_lines += s.post_filter_lines
    into.metadata_bytes += s.metadata_bytes


def _add_to(counts: BinCounts, sizes: BinCounts | None, g: int,
            result: SplitResult) -> None:
    edges = counts.edges
    for key, b in result.items():
        slot = np.searchsorted(edges, b.ids * g, "left") if g else b.ids
        _add(counts.acc, key, np.bincount(slot, weights=b.counts, minlength=len(edges) + 1))
        if sizes is not None and b.sizes is not None:
            _add(sizes.acc, key, np.bincount(slot, weights=b.sizes,
                                             minlength=len(edges) + 1))


def _add(acc: dict[LabelKey, F64], key: LabelKey, hist: npt.NDArray[Any]) -> None:
    prev = acc.get(key)
    if prev is None:
        acc[key] = hist.astype(np.float64)
    else:
        prev += hist


def count_lines(source: LogSource, params: QueryParams, lr: A.LogRange, lo: int, hi: int,
                stats: QueryStats, grouping: A.Grouping | None, counts: BinCounts,
                sizes: BinCounts | None) -> bool:
    """Fill `counts` (and `sizes`) as the per-line engine's `line_sink` would; False
    (nothing done) when the query shape is not one the columnar engine answers.

    Closed splits come from `params.options.cache` when the source has a `generation`
    and the window edges fall on a bucket grid of at least a millisecond, and are kept
    there unless the source reported `warnings` (lines left out). The series
    limit is `counts.limit` (the query's `max_series`), counted as units read blocks and
    as cached splits are added; the deadline is checked before every block.
    """
    opts, tenants, limit = params.options, params.tenants, counts.limit
    plan = plan_lines(lr, grouping) if opts.columnar else None
    if plan is None:
        return False
    mapper = KeyMapper(grouping, None)
    refs = source.series(tenants, list(lr.log.matchers), lo, hi)
    stats.streams += len(refs)
    want = sizes is not None
    edges = counts.edges
    g = int(np.gcd.reduce(np.abs(edges))) if len(edges) else 0
    g = g if g >= MIN_BUCKET_NS else 0
    generation = getattr(source, "generation", None)
    cache = opts.cache if g and isinstance(generation, int) else None
    closed_before = time.time_ns() - opts.cache_freshness_ns
    splits = split_range(lo, hi, opts.split_ns)
    stats.splits += len(splits)
    levels = range_pipeline(lr, params, mapper).levels  # a tenant's rules may change
    shape = (tuple(tenants), repr(lr.log), lr.range_ns, lr.offset_ns, plan.by, want, g,
             levels)
    keys: dict[int, Hashable] = {}
    todo: list[tuple[int, int, int]] = []  # splits to read: (index, start, end)
    for k, (a, b) in enumerate(splits):
        if cache is not None and b <= closed_before:
            keys[k] = (generation, shape, a, b)
            stats.cache_requested += 1
            hit = cache.get(keys[k])
            if hit is not None:
                stats.cache_found += 1
                if limit is not None:
                    for key, bk in hit.items():
                        limit.note_times(key, bk.ids * g)  # a bucket's edge is in its slot
                _add_to(counts, sizes, g, hit)
                continue
        todo.append((k, a, b))
    # Series by series, then time: with one thread the first pipeline error is the one the
    # per-line engine meets (`run_units` raises the earliest unit's).
    units = [_unit(source, ref, k, a, b, lr, plan, mapper, g, edges, want, params, limit)
             for ref in refs for k, a, b in todo]
    # With no more series than threads they all start at once anyway.
    if 1 < opts.parallelism < len(refs) and plan.can_fail():
        for _ in run_units([_probe(source, ref, lo, hi, lr, plan, mapper, params)
                            for ref in refs], opts.parallelism, opts):
            pass
    pending = {k: len(refs) for k in keys}
    parts: dict[int, dict[LabelKey, list[Buckets]]] = {k: {} for k in keys}
    for part in run_units(units, opts.parallelism, opts):
        merge_stats(stats, part.stats)
        result = {key: _combine(bs) for key, bs in part.series.items()}
        _add_to(counts, sizes, g, result)
        if cache is not None and part.split in pending:
            for key, bk in result.items():
                parts[part.split].setdefault(key, []).append(bk)
            pending[part.split] -= 1
            # A split read while the source left lines out (an unreadable chunk, in its
            # `warnings`) is not kept: the next query reads it again.
            if not pending[part.split] and not getattr(source, "warnings", None):
                cache.put(keys[part.split], {key: _combine(bs) for key, bs
                                             in parts.pop(part.split).items()})
                stats.cache_stored += 1
    return True
