"""The columnar metric engine: `count_over_time`, `rate`, `bytes_*` grouped `by` labels,
computed over whole blocks as arrays, on every core.

`plan_lines` accepts the queries it can answer exactly (one `json` or `logfmt` parser
without options, label filters, line filters, `drop` of names, a `by` grouping — from the
range aggregation or pushed down from an outer `sum`) and returns None for the rest, which
the per-line engine answers. Per block: the leading line filters select lines (the log
engine's own `LogPipeline.select`), the parser extracts only the labels that the filters
and the grouping name (`_columnar_scan`), the label filters become masks
(`_columnar_filter`), and each group's timestamps are binned over the step grid's window
edges. Lines the columnar parser cannot classify go through the per-line stages, so the
answer is the reference engine's in every case.

Work units are (time split, series); `_exec.run_units` runs them on threads — the RE2 and
numpy kernels release the GIL — and their histograms are summed (integer counts in float64:
any order gives the same bits).

Where block filters will plug in: `Plan.required_literals()` are the byte strings every
selected line must contain; a block whose token filter excludes one of them can be skipped
without being read (chunk format v2).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import re2

from sluiceway.logql import _ast as A
from sluiceway.logql._columnar_filter import (
    ERROR,
    ERROR_NAMES,
    JSON_ERR,
    ErrCodes,
    VecFilter,
    compile_vec_filter,
    error_col,
    filter_names,
)
from sluiceway.logql._columnar_scan import (
    Col,
    Mask,
    arrow_lines,
    arrow_text,
    extract_field,
    json_classes,
    logfmt_simple,
    regexp_fields,
)
from sluiceway.logql._errors import QueryError
from sluiceway.logql._exec import Aborted, ExecOptions, run_units, split_range
from sluiceway.logql._filters import BlockFilter, compile_line_filter
from sluiceway.logql._metric_extract import BinCounts, KeyMapper, pipeline_error
from sluiceway.logql._pattern import compile_pattern
from sluiceway.logql._pipeline import LabelKey, LogPipeline
from sluiceway.logql._result import QueryStats
from sluiceway.logql._results_cache import Buckets, SplitResult
from sluiceway.logql._source import LogSource, SeriesRef
from sluiceway.logql._stages import sanitize_key
from sluiceway.model import EntryBlock

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
ERROR_DETAILS = "__error_details__"


@dataclass(frozen=True, slots=True)
class _Parse:
    fmt: str  # "json" | "logfmt" | "regexp"
    pattern: str = ""
    groups: tuple[tuple[str, str], ...] = ()  # regexp: (label name, group name)


@dataclass(frozen=True, slots=True)
class _Drop:
    names: tuple[str, ...]


Op = _Parse | VecFilter | BlockFilter | _Drop


@dataclass(slots=True)
class Plan:
    """A query shape the columnar engine answers: ops in stage order after the leading
    line filters, the parsed labels it needs, and the `by` labels of the series."""

    ops: list[Op]
    fields: tuple[str, ...]
    by: tuple[str, ...]
    preserve_error: bool
    literals: tuple[bytes, ...] = ()
    without: tuple[str, ...] | None = None  # no `by`: every label but these (no parser)

    def required_literals(self) -> tuple[bytes, ...]:
        return self.literals

    def can_fail(self) -> bool:
        """Can a line keep `__error__` (a 400 pipeline error)? Not when grouped by it."""
        return not self.preserve_error and any(
            isinstance(op, (_Parse, VecFilter)) for op in self.ops)


def _names_ok(names: set[str]) -> bool:
    # `_extracted` names depend on which stream labels a series has and on key order;
    # error details are per-line texts: both are left to the per-line engine.
    return not any(n == ERROR_DETAILS or n.endswith("_extracted") for n in names)


def plan_lines(lr: A.LogRange, grouping: A.Grouping | None) -> Plan | None:
    """The columnar plan of a count/rate/bytes range, or None when it does not apply."""
    if lr.unwrap is not None:
        return None
    # Without `by`, a series keeps all its labels: only stream labels are known here, so
    # that needs a query without a parser.
    without = None if grouping is not None and not grouping.without else (
        grouping.labels if grouping is not None else ())
    by = set(grouping.labels) if grouping is not None and without is None else set()
    stages = lr.log.stages
    n = 0
    literals: list[bytes] = []
    while n < len(stages) and isinstance(stages[n], A.LineFilter):
        st = stages[n]
        assert isinstance(st, A.LineFilter)
        if st.op == "|=" and len(st.values) == 1 and not st.ip and st.values[0]:
            literals.append(st.values[0].encode())
        n += 1
    ops: list[Op] = []
    names: set[str] = set(by)
    parser = False
    for st in stages[n:]:
        if isinstance(st, A.JsonParser) and not st.params and not parser:
            ops.append(_Parse("json"))
            parser = True
        elif (isinstance(st, A.LogfmtParser) and not st.params and not st.strict
              and not st.keep_empty and not parser):
            ops.append(_Parse("logfmt"))
            parser = True
        elif isinstance(st, A.RegexpParser) and not parser:
            got = _regexp_parse(st.pattern)
            if got is None:
                return None
            ops.append(got)
            parser = True
        elif isinstance(st, A.PatternParser) and not parser:
            ops.append(_pattern_parse(st.pattern))
            parser = True
        elif isinstance(st, A.LabelFilter):
            names |= filter_names(st.expr)
            ops.append(compile_vec_filter(st.expr))
        elif isinstance(st, A.LineFilter):
            ops.append(compile_line_filter(st))
        elif isinstance(st, A.Drop) and all(s.matcher is None for s in st.items):
            ops.append(_Drop(tuple(s.name for s in st.items)))
        else:
            return None
    if not _names_ok(names) or (without is not None and parser):
        return None
    fields = tuple(sorted(names - {ERROR})) if parser else ()
    return Plan(ops, fields, tuple(sorted(by)), ERROR in by, tuple(literals), without)


def _regexp_parse(pattern: str) -> _Parse | None:
    """Only named groups (Arrow's extract_regex takes no others), and no two that sanitise
    to one label name (the last would win, line by line)."""
    rx = re2.compile(pattern)
    if rx.groups != len(rx.groupindex):
        return None
    labels = [(sanitize_key(g), g) for g in rx.groupindex]
    if len({lab for lab, _ in labels}) != len(labels) or any(not lab for lab, _ in labels):
        return None
    return _Parse("regexp", pattern, tuple(labels))


def _pattern_parse(text: str) -> _Parse:
    """`| pattern` as the equivalent RE2 regex: the first literal anchors at the start,
    each capture stops at the first occurrence of the next literal (lazy, leftmost-first
    matching finds exactly that), the last one takes the rest of the line."""
    pat = compile_pattern(text)
    out = ["^"]
    groups: list[tuple[str, str]] = []
    for i, (kind, val) in enumerate(pat.parts):
        if kind == "lit":
            out.append(re2.escape(val))
            continue
        last = i + 1 == len(pat.parts)
        body = "(?s:.*)" if last else "(?s:.*?)"
        if val == "_":
            out.append(body)
        else:
            group = f"g{len(groups)}"  # capture names need not be RE2 group names
            groups.append((val, group))
            out.append(f"(?P<{group}>{body})")
    return _Parse("regexp", "".join(out), tuple(groups))


# --- one block -----------------------------------------------------------------------

Group = tuple[LabelKey, I64, I64 | None]  # series key, ts, line sizes


@dataclass(slots=True)
class _BlockOut:
    groups: list[Group] = field(default_factory=list)


def _reference(pipeline: LogPipeline, mapper: KeyMapper, block: EntryBlock,
               idx: npt.NDArray[np.intp], want_sizes: bool) -> list[Group]:
    """The per-line engine on some lines of a block (as `line_sink` does)."""
    ts_by: dict[LabelKey, list[int]] = {}
    size_by: dict[LabelKey, list[int]] = {}
    for t, line, key, _ in pipeline.process(block, idx, False):
        k = mapper(key)
        if k not in ts_by:
            ts_by[k], size_by[k] = [], []
        ts_by[k].append(t)
        if want_sizes:
            size_by[k].append(len(line.encode()))
    return [(k, np.asarray(t, dtype=np.int64),
             np.asarray(size_by[k], dtype=np.int64) if want_sizes else None)
            for k, t in ts_by.items()]


def block_columns(plan: Plan, block: EntryBlock) -> tuple[dict[str, Col], ErrCodes, Mask,
                                                        Mask]:
    """Run the plan's stages on a block: (label columns, error codes, lines still alive,
    lines only the per-line stages can decide)."""
    n = len(block)
    alive: Mask = np.ones(n, dtype=np.bool_)
    other: Mask = np.zeros(n, dtype=np.bool_)
    err: ErrCodes = np.zeros(n, dtype=np.int8)
    stream = dict(block.labels)
    env: dict[str, Col] = {k: Col.constant(n, v) for k, v in stream.items()}
    for op in plan.ops:
        if isinstance(op, _Parse) and op.fmt == "regexp":
            text = arrow_text(block)
            if text is None:  # not UTF-8: the per-line engine decides every line
                other[:] = True
                continue
            named = {lab: g for lab, g in op.groups if lab in plan.fields and lab not in stream}
            env.update(regexp_fields(text, op.pattern, named))
        elif isinstance(op, _Parse):
            arr = arrow_lines(block)
            wanted = [f for f in plan.fields if f not in stream]
            # The simple-line pattern also proves the first wanted key is not repeated.
            unique = wanted[0] if wanted else None
            if op.fmt == "json":
                simple, not_obj = json_classes(block, arr, unique)
                other |= ~simple & ~not_obj
                err[not_obj] = JSON_ERR
            else:
                simple = logfmt_simple(arr, unique)
                other |= ~simple
            # A stream label's own name keeps the stream's value: the parsed key
            # becomes `<name>_extracted`.
            for name in wanted:
                if not simple.any():  # e.g. `| json` over a plain-text stream
                    env[name] = Col.absent(n)
                    continue
                col, dup = extract_field(op.fmt, arr, name, simple, name == unique)
                other |= dup
                env[name] = col
        elif isinstance(op, VecFilter):
            alive &= op(env, err, alive & ~other) | other
        elif isinstance(op, _Drop):
            for name in op.names:
                if name == ERROR:
                    err[:] = 0
                else:
                    env.pop(name, None)
        else:  # a line filter: pure on the line, valid for every class
            alive = op(block, alive)
    return env, err, alive, other


def run_block(plan: Plan, pipeline: LogPipeline, mapper: KeyMapper, block: EntryBlock,
              idx: npt.NDArray[np.intp], want_sizes: bool) -> list[Group]:
    """Series keys with the timestamps (and sizes) of a block's lines that pass."""
    if block.metadata is not None:  # metadata labels: the per-line engine decides
        return _reference(pipeline, mapper, block, idx, want_sizes)
    if len(idx) < len(block):
        block = block.take(idx)
    env, err, alive, other = block_columns(plan, block)
    ok = alive & ~other
    fallback = np.flatnonzero(alive & other)
    if not plan.preserve_error:
        bad = np.flatnonzero(ok & (err != 0))
        if len(bad):
            first = int(bad[0])
            before = fallback[fallback < first]
            _reference(pipeline, mapper, block, before, False)  # raises if one fails first
            _reference(pipeline, mapper, block, np.array([first]), False)
            raise pipeline_error({ERROR: ERROR_NAMES[int(err[first])]})  # not reached
    groups = _group(plan, env, err, ok, block, want_sizes)
    if len(fallback):
        groups += _reference(pipeline, mapper, block, fallback, want_sizes)
    return groups


def _group(plan: Plan, env: dict[str, Col], err: ErrCodes, ok: Mask, block: EntryBlock,
           want_sizes: bool) -> list[Group]:
    sizes = np.diff(block.offsets) if want_sizes else None
    return [(key, block.ts[rows], None if sizes is None else sizes[rows])
            for key, rows in group_rows(plan, env, err, ok)]


def group_rows(plan: Plan, env: dict[str, Col], err: ErrCodes,
               ok: Mask) -> list[tuple[LabelKey, I64]]:
    """The series key of each line in `ok`, as (key, the lines' indexes ascending)."""
    sel = np.flatnonzero(ok)
    if not len(sel):
        return []
    cols: list[tuple[str, Col]] = []
    names = plan.by if plan.without is None else tuple(
        sorted(n for n in env if n not in plan.without))
    fixed: list[tuple[str, str]] = []  # stream labels: one value for the whole block
    for name in names:
        col = error_col(err) if name == ERROR else env.get(name)
        if col is None:
            continue
        if col.fixed is not None:
            if col.fixed:
                fixed.append((name, col.fixed))
            continue
        cols.append((name, col.take(sel)))
    if not cols:
        return [(tuple(fixed), sel)]
    groups = _group_cols(cols, sel)
    if fixed:
        return [(tuple(sorted(key + tuple(fixed))), rows) for key, rows in groups]
    return groups


def _group_cols(cols: list[tuple[str, Col]], sel: I64) -> list[tuple[LabelKey, I64]]:
    code = np.zeros(len(sel), dtype=np.int64)
    radix = 1
    for _, col in cols:
        width = len(col.values) + 1
        if radix * width >= 1 << 62:
            break
        code += (col.codes + 1) * radix
        radix *= width
    else:
        return _split_groups(cols, code, sel)
    stacked = np.stack([c.codes for _, c in cols], axis=1)
    _, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return _split_groups(cols, inverse.reshape(-1).astype(np.int64), sel)


def _split_groups(cols: list[tuple[str, Col]], code: I64,
                  sel: I64) -> list[tuple[LabelKey, I64]]:
    uniq, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    out: list[tuple[LabelKey, I64]] = []
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    for g in range(len(uniq)):
        i = int(first[g])
        key = tuple((name, col.values[c]) for name, col in cols
                    if (c := int(col.codes[i])) >= 0 and col.values[c])
        out.append((key, sel[order[bounds[g]:bounds[g + 1]]]))
    return out


# --- a whole range aggregation ---------------------------------------------------------

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
          want_sizes: bool, opts: ExecOptions) -> Callable[[threading.Event], _Partial]:
    def run(abort: threading.Event) -> _Partial:
        out = _Partial(split)
        st = out.stats
        pipeline = LogPipeline(lr.log.stages)
        for block in source.blocks(ref, lo, hi, "forward"):
            if abort.is_set():
                raise Aborted()
            opts.check()
            block = block.clip(lo, hi)
            if not len(block):
                continue
            st.blocks_read += 1
            st.lines_processed += len(block)
            st.bytes_processed += block.nbytes
            if block.metadata is not None:
                st.metadata_bytes += sum(len(k) + len(v) for md in block.metadata if md
                                         for k, v in md.items())
            idx = pipeline.select(block)
            st.post_filter_lines += len(idx)
            if not len(idx):
                continue
            for key, ts, sizes in run_block(plan, pipeline, mapper, block, idx, want_sizes):
                if len(ts):
                    out.series.setdefault(key, []).append(_bucketize(ts, sizes, g, edges))
        return out

    return run


PROBE_LINES = 1024


def _probe(source: LogSource, ref: SeriesRef, lo: int, hi: int, lr: A.LogRange,
           plan: Plan, mapper: KeyMapper,
           opts: ExecOptions) -> Callable[[threading.Event], None]:
    """The first lines of a series, only to raise its pipeline error early: a query whose
    lines keep `__error__` answers 400 as soon as any series shows one, instead of after
    every series listed before it (their counts are discarded; the scan redoes them)."""
    def run(abort: threading.Event) -> None:
        blocks = source.blocks(ref, lo, hi, "forward")
        try:
            block = next(iter(blocks), None)
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()
        if block is None or abort.is_set():
            return
        block = block.clip(lo, hi)
        head = block.slice(0, min(len(block), PROBE_LINES))
        pipeline = LogPipeline(lr.log.stages)
        idx = pipeline.select(head)
        if len(idx):
            run_block(plan, pipeline, mapper, head, idx, False)

    return run


def merge_stats(into: QueryStats, s: QueryStats) -> None:
    into.blocks_read += s.blocks_read
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


def count_lines(source: LogSource, tenants: list[str], lr: A.LogRange, lo: int, hi: int,
                stats: QueryStats, grouping: A.Grouping | None, counts: BinCounts,
                sizes: BinCounts | None, opts: ExecOptions) -> bool:
    """Fill `counts` (and `sizes`) as the per-line engine's `line_sink` would; False
    (nothing done) when the query shape is not one the columnar engine answers.

    Closed splits come from `opts.cache` when the source has a `generation` and the
    window edges fall on a bucket grid of at least a millisecond.
    """
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
    shape = (tuple(tenants), repr(lr.log), lr.range_ns, lr.offset_ns, plan.by, want, g)
    keys: dict[int, Hashable] = {}
    units = []
    for k, (a, b) in enumerate(splits):
        if cache is not None and b <= closed_before:
            keys[k] = (generation, shape, a, b)
            stats.cache_requested += 1
            hit = cache.get(keys[k])
            if hit is not None:
                stats.cache_found += 1
                _add_to(counts, sizes, g, hit)
                continue
        units += [_unit(source, ref, k, a, b, lr, plan, mapper, g, edges, want, opts)
                  for ref in refs]
    # With no more series than threads they all start at once anyway.
    if 1 < opts.parallelism < len(refs) and plan.can_fail():
        for _ in run_units([_probe(source, ref, lo, hi, lr, plan, mapper, opts)
                            for ref in refs], opts.parallelism, opts):
            pass
    pending = {k: len(refs) for k in keys}
    parts: dict[int, dict[LabelKey, list[Buckets]]] = {k: {} for k in keys}
    for part in run_units(units, opts.parallelism, opts):
        merge_stats(stats, part.stats)
        result = {key: _combine(bs) for key, bs in part.series.items()}
        _add_to(counts, sizes, g, result)
        if opts.max_series and len(counts.acc) > opts.max_series:
            raise QueryError(f"maximum number of series ({opts.max_series}) reached for a "
                             "single query")
        if cache is not None and part.split in pending:
            for key, bk in result.items():
                parts[part.split].setdefault(key, []).append(bk)
            pending[part.split] -= 1
            if not pending[part.split]:
                cache.put(keys[part.split], {key: _combine(bs) for key, bs
                                             in parts.pop(part.split).items()})
                stats.cache_stored += 1
    return True
