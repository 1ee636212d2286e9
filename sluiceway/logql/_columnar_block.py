"""One block through a columnar `Plan`: label columns, masks, series keys.

`block_columns` runs the plan's stages on a whole block (`_columnar_scan` parses,
`_columnar_filter` masks), with `detected_level` as a column when the pipeline has level
rules; `run_block` adds the pipeline-error rule and sends the lines the columnar parser
cannot classify through the per-line stages, so the answer is the reference engine's in
every case; `group_rows` gives each surviving line its series key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import orjson

from sluiceway.logql._columnar_filter import (
    ERROR,
    ERROR_NAMES,
    JSON_ERR,
    ErrCodes,
    VecFilter,
    error_col,
)
from sluiceway.logql._columnar_plan import Plan, _Drop, _Parse
from sluiceway.logql._columnar_scan import (
    Col,
    Mask,
    arrow_lines,
    arrow_text,
    extract_field,
    json_classes,
    logfmt_simple,
    on_first_use,
    regexp_fields,
    string_spans,
    unpack_classes,
)
from sluiceway.logql._levels import DETECTED_LEVEL, LevelRules, block_levels, stream_level
from sluiceway.logql._metric_extract import KeyMapper, pipeline_error
from sluiceway.logql._metric_types import I64
from sluiceway.logql._pipeline import LabelKey, LogPipeline
from sluiceway.model import MEMO_KEYS, EntryBlock

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:
    pc = on_first_use("pyarrow.compute")  # loads with the first columnar query

Group = tuple[LabelKey, I64, I64 | None]  # series key, ts, line sizes

_runs = [0]  # line classifications computed (not found in a block's memo), for tests


def classifications() -> int:
    """How many times a block's lines were classified (an RE2 pass over the block) since
    the process started: a block's classes are kept with it (`EntryBlock.memo`), so a
    query over blocks already classified adds nothing."""
    return _runs[0]


def _remember(block: EntryBlock, key: tuple[str, str | None],
              value: tuple[Mask, ...]) -> None:
    """Keep `value` in the block's memo: a new dict swapped in (queries on other threads
    may read the old one), the oldest entry dropped past MEMO_KEYS."""
    old = block.memo or {}
    memo = dict(list(old.items())[-(MEMO_KEYS - 1):]) if len(old) >= MEMO_KEYS else dict(old)
    for v in value:
        v.flags.writeable = False  # shared by every later query of the block
    memo[key] = value
    block.memo = memo


def line_classes(fmt: str, block: EntryBlock, unique: str | None) -> tuple[Mask, ...]:
    """The columnar parser's classes of the block's lines (`json_classes`: simple, not an
    object; `unpack_classes` the same; `logfmt_simple`: simple), from the block's memo
    when a query computed them before, else computed and kept there."""
    key = (fmt, unique)
    got = block.memo.get(key) if block.memo is not None else None
    if got is not None:
        return got
    _runs[0] += 1
    arr = arrow_lines(block)
    if fmt == "json":
        value: tuple[Mask, ...] = json_classes(block, arr, unique)
    elif fmt == "unpack":
        value = unpack_classes(block, arr)
    else:
        value = (logfmt_simple(arr, unique),)
    _remember(block, key, value)
    return value


def class_keys(plan: Plan, labels: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The line classes `block_columns` reads from a block with these stream labels: those
    of its parsers that read the block's own lines (before any `unpack` replaces them)."""
    keys: list[tuple[str, str | None]] = []
    for op in plan.ops:
        if isinstance(op, _Parse) and op.fmt == "unpack":
            keys.append(("unpack", None))
            break
        if isinstance(op, _Parse) and op.fmt in ("json", "logfmt"):
            wanted = [f for f in plan.fields if f not in labels]
            keys.append((op.fmt, wanted[0] if wanted else None))
    return list(dict.fromkeys(keys))


def share_classes(plan: Plan, parts: list[EntryBlock], joined: EntryBlock) -> None:
    """`joined` is `parts` concatenated: its line classes are the parts' (kept with them),
    or, when a part has none yet, computed once over the joined lines and kept with
    each part (copies: a part's memo holds only its own rows)."""
    if len(parts) < 2:
        return
    for key in class_keys(plan, joined.labels):
        got = [p.memo.get(key) if p.memo is not None else None for p in parts]
        if all(g is not None for g in got):
            _remember(joined, key, tuple(np.concatenate(cols) for cols in zip(*got, strict=True)))
            continue
        value = line_classes(key[0], joined, key[1])
        lo = 0
        for p in parts:
            hi = lo + len(p)
            _remember(p, key, tuple(v[lo:hi].copy() for v in value))
            lo = hi


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


def level_col(rules: LevelRules, block: EntryBlock) -> Col:
    """`detected_level` of every line of a block (without metadata), as a column."""
    levels = block_levels(rules, block)
    if isinstance(levels, str):
        return Col.constant(len(block), levels)
    codes: dict[str, int] = {}
    idx = np.fromiter((codes.setdefault(v, len(codes)) for v in levels), dtype=np.int64,
                      count=len(levels))
    return Col(idx, list(codes))


def _parsed_level(env: dict[str, Col], level: Col, other: Mask) -> None:
    """A parser that extracted a `detected_level` of its own: the per-line stages decide
    the lines that have one (the parsed value replaces the level there); the others keep
    the line's level."""
    parsed = env.get(DETECTED_LEVEL)
    if parsed is not None and parsed is not level:
        other |= parsed.codes >= 0
    env[DETECTED_LEVEL] = level


def block_columns(plan: Plan, block: EntryBlock, levels: LevelRules | None = None,
                  ) -> tuple[dict[str, Col], ErrCodes, Mask, Mask, EntryBlock]:
    """Run the plan's stages on a block: (label columns, error codes, lines still alive,
    lines only the per-line stages can decide, the lines as the stages leave them: the
    block itself unless `unpack` replaced some). With `levels`, the lines carry
    `detected_level` (as structured metadata does: before any stage, not a stream label)."""
    n = len(block)
    alive: Mask = np.ones(n, dtype=np.bool_)
    other: Mask = np.zeros(n, dtype=np.bool_)
    err: ErrCodes = np.zeros(n, dtype=np.int8)
    stream = dict(block.labels)
    env: dict[str, Col] = {k: Col.constant(n, v) for k, v in stream.items()}
    level = level_col(levels, block) if levels is not None else None
    if level is not None:
        env[DETECTED_LEVEL] = level
    for op in plan.ops:
        if isinstance(op, _Parse) and op.fmt == "unpack":
            block = _unpack(plan, block, stream, env, err, other)
            if level is not None:
                _parsed_level(env, level, other)
        elif isinstance(op, _Parse) and op.fmt == "regexp":
            named = {lab: g for lab, g in op.groups if lab in plan.fields and lab not in stream}
            if not named:  # sets no label the query reads (and no error): nothing to do
                continue
            text = arrow_text(block)
            if text is None:  # not UTF-8: the per-line engine decides every line
                other[:] = True
                continue
            env.update(regexp_fields(text, op.pattern, named))
            if level is not None:
                _parsed_level(env, level, other)
        elif isinstance(op, _Parse):
            arr = arrow_lines(block)
            wanted = [f for f in plan.fields if f not in stream]
            # The simple-line pattern also proves the first wanted key is not repeated.
            unique = wanted[0] if wanted else None
            if op.fmt == "json":
                simple, not_obj = line_classes("json", block, unique)
                other |= ~simple & ~not_obj
                err[not_obj] = JSON_ERR
            else:
                (simple,) = line_classes("logfmt", block, unique)
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
            if level is not None:
                _parsed_level(env, level, other)
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
    return env, err, alive, other, block


_ENTRY_KEY = r'"_entry"[ \t\n\r]*:'


def _unpack(plan: Plan, block: EntryBlock, stream: dict[str, str], env: dict[str, Col],
            err: ErrCodes, other: Mask) -> EntryBlock:
    """`| unpack` on a block (Loki's, as `_stages._unpack`): a line not starting with `{`
    gets `JSONParserErr`; a JSON object with a string `_entry` becomes that string, its
    other top-level strings labels; any other object is left as it is, without labels;
    text a strict decoder refuses gets `JSONParserErr`. Flat objects without escapes are
    read with RE2 kernels over the whole block; the rest (escapes, nesting, a repeated
    key, a block that is not UTF-8) with orjson line by line, as the reference does, but
    without its per-line stages; a line holding a key the engine keeps apart
    (`__error__`...) is left to those. Returns the lines after it (unpacked ones
    replaced, the others as they were)."""
    n = len(block)
    wanted = [f for f in plan.fields if f not in stream and f != "_entry"]
    for name in plan.fields:
        if name == "_entry" and name not in stream:
            env[name] = Col.absent(n)  # never a label
    arr = arrow_lines(block)
    simple, not_obj = line_classes("unpack", block, None)
    err[not_obj] = JSON_ERR
    unpacked = np.zeros(n, dtype=np.bool_)
    slow = ~not_obj & ~simple
    spans = None
    if arrow_text(block) is None:  # not UTF-8: every object is decoded as the reference
        slow = ~not_obj
    elif simple.any():
        spans = string_spans(arr, "_entry", simple)
    if spans is not None:
        rows, start, stop, other_shape = spans
        # `_entry` held first as something else than a string (a number, spaced out...)
        # or held twice: decoded line by line.
        twice = simple & (np.asarray(pc.count_substring_regex(arr, _ENTRY_KEY).to_numpy(
            zero_copy_only=False)) > 1)
        slow |= other_shape | twice
        unpacked[rows] = True
        unpacked &= ~twice
    cols: dict[str, Col] = {}
    for name in wanted:
        if not unpacked.any():
            cols[name] = Col.absent(n)
            continue
        col, twice = extract_field("unpack", arr, name, unpacked)
        slow |= twice
        col.codes[~unpacked | twice] = -1
        cols[name] = col
    unpacked &= ~slow
    entries = _unpack_lines(block, np.flatnonzero(slow), wanted, cols, err, other)
    for i in entries:
        unpacked[i] = True
    env.update(cols)
    if not unpacked.any():
        return block
    # The lines after the stage: `_entry` where unpacked, the line itself elsewhere.
    base = block.offsets
    view = memoryview(block.blob)
    lo, hi = base[:-1].copy(), base[1:].copy()
    if spans is not None:
        rows, start, stop, _ = spans
        keep = unpacked[rows] & np.isin(rows, list(entries), invert=True)
        first = int(base[0])  # the Arrow array's data starts at the first line
        lo[rows[keep]], hi[rows[keep]] = start[keep] + first, stop[keep] + first
    pieces = [entries[i] if i in entries else view[a:b]
              for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True))]
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EntryBlock(block.labels, block.ts, b"".join(pieces), offsets, block.metadata)


def _unpack_lines(block: EntryBlock, rows: npt.NDArray[np.intp], wanted: list[str],
                  cols: dict[str, Col], err: ErrCodes, other: Mask) -> dict[int, bytes]:
    """`| unpack` of some lines with orjson (the reference's decoder, on the line decoded
    as the reference decodes it): errors into `err`, wanted labels into `cols`, lines
    holding a `__` key into `other`. Returns the `_entry` of each line unpacked."""
    out: dict[int, bytes] = {}
    found: dict[str, dict[int, str]] = {name: {} for name in wanted}
    blob, offs = block.blob, block.offsets
    for i in rows.tolist():
        text = blob[int(offs[i]):int(offs[i + 1])].decode("utf-8", "replace")
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            err[i] = JSON_ERR
            continue
        entry = obj.get("_entry") if isinstance(obj, dict) else None
        if not isinstance(entry, str):
            continue
        if any(k.startswith("__") for k in obj):
            other[i] = True  # it would set `__error__` itself: the per-line stages
            continue
        out[i] = entry.encode()
        for name in wanted:
            v = obj.get(name)
            if isinstance(v, str):
                found[name][i] = v
    for name, got in found.items():
        col = cols[name]
        col.codes[rows] = -1
        if got:
            index = {v: k for k, v in enumerate(col.values)}
            for i, v in got.items():
                code = index.get(v)
                if code is None:
                    code = index[v] = len(col.values)
                    col.values.append(v)
                col.codes[i] = code
    return out


def run_block(plan: Plan, pipeline: LogPipeline, mapper: KeyMapper, block: EntryBlock,
              idx: npt.NDArray[np.intp], want_sizes: bool) -> list[Group]:
    """Series keys with the timestamps (and sizes) of a block's lines that pass."""
    if block.metadata is not None:  # metadata labels: the per-line engine decides
        return _reference(pipeline, mapper, block, idx, want_sizes)
    if len(idx) < len(block):
        block = block.take(idx)
    env, err, alive, other, lines = block_columns(plan, block, pipeline.levels)
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
    groups = _group(plan, env, err, ok, lines, want_sizes)
    if len(fallback):
        groups += _reference(pipeline, mapper, block, fallback, want_sizes)
    return groups


def summary_key(plan: Plan, pipeline: LogPipeline, labels: Mapping[str, str],
                level: str | None = None) -> LabelKey:
    """The series key of the lines of a summarized block of a stream with these labels
    (a plan without stages: the stream's labels, with `detected_level` when the series
    keep it: `level`, else the one the stream labels decide)."""
    env = {k: Col.constant(1, v) for k, v in labels.items()}
    if pipeline.levels is not None:
        if level is None:
            level = stream_level(pipeline.levels, labels)
        if level is None:
            raise ValueError("a block summary of a stream whose lines decide their level")
        env[DETECTED_LEVEL] = Col.constant(1, level)
    ((key, _rows),) = group_rows(plan, env, np.zeros(1, dtype=np.int8),
                                 np.ones(1, dtype=np.bool_))
    return key


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
    out: list[tuple[LabelKey, I64]] = []
    if len(code) and int(code.max()) < 1 << 16:
        # Few distinct codes (the usual case): a stable radix sort of 16-bit codes and
        # their counts, instead of sorting twice.
        small = code.astype(np.uint16)
        order = np.argsort(small, kind="stable")
        counts = np.bincount(small)
        bounds = np.concatenate(([0], np.cumsum(counts[counts > 0])))
    else:
        _, inverse = np.unique(code, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(int(inverse.max()) + 2))
    first = order[bounds[:-1]]  # each group's first line (the sort is stable)
    for g in range(len(bounds) - 1):
        i = int(first[g])
        key = tuple((name, col.values[c]) for name, col in cols
                    if (c := int(col.codes[i])) >= 0 and col.values[c])
        out.append((key, sel[order[bounds[g]:bounds[g + 1]]]))
    return out
