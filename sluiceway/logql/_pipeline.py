"""A compiled log pipeline: block-level line filters first, then per-line stages.

The leading run of line filters works on whole blocks (masks); everything from the
first parser/formatter on runs per surviving line on a `Row`. Output entries carry
their final label set as a sorted tuple, the grouping key of the result streams.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np

from sluiceway.logql import _ast as A
from sluiceway.logql._block_needs import BlockNeeds, block_needs
from sluiceway.logql._filters import (
    BlockFilter,
    LinePrefilter,
    compile_line_filter,
    contains_mask,
)
from sluiceway.logql._levels import (
    DETECTED_LEVEL,
    LevelRules,
    block_level,
    entry_level,
    stream_level,
)
from sluiceway.logql._limits import DEFAULT_MAX_LINE_SIZE, Deadline
from sluiceway.logql._result import QueryStats
from sluiceway.logql._source import LogSource
from sluiceway.logql._stages import METADATA, PARSED, Row, RowStage, compile_row_stages
from sluiceway.model import EntryBlock, ReadHints, SeriesRef

LabelKey = tuple[tuple[str, str], ...]
# (ts, line, labels key, categorized extra or None)
Processed = tuple[int, str, LabelKey, dict[str, Any] | None]


def label_key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


class LogPipeline:
    """Runs a `LogExpr`'s stages over `EntryBlock`s of one series.

    With `categorize`, the key holds the stream labels only and the extra element is
    Loki's `{"structuredMetadata": {...}, "parsed": {...}}` (empty groups left out).
    Templates write at most `max_line_size` bytes; `deadline` is checked before each
    block and every `Deadline.CHECK_EVERY` lines inside one. With `levels`, every entry
    carries `detected_level` as structured metadata (`_levels`), before any stage runs.
    """

    def __init__(self, stages: tuple[A.Stage, ...], categorize: bool = False,
                 max_line_size: int = DEFAULT_MAX_LINE_SIZE,
                 deadline: Deadline | None = None, levels: LevelRules | None = None) -> None:
        n = 0
        while n < len(stages) and isinstance(stages[n], A.LineFilter):
            n += 1
        self.block_filters: list[BlockFilter] = [
            compile_line_filter(s) for s in stages[:n] if isinstance(s, A.LineFilter)]
        # What the source may filter by next to the data (`LogSource.blocks`).
        self.prefilter = LinePrefilter.of(stages[:n])
        # Pass rates seen so far: the leading filters are ANDed predicates on the same
        # line, so running the most selective first lets the others look at few lines.
        self._rates = [0.0] * len(self.block_filters)
        self.row_stages: list[RowStage] = compile_row_stages(stages[n:], max_line_size)
        self.categorize = categorize
        self.deadline = deadline
        self.levels = levels
        self.prefilters = [(name, needle) for name, needle in _parsed_value_prefilters(stages[n:])
                           if levels is None or name != DETECTED_LEVEL]
        self._level_keys: dict[tuple[LabelKey, str], LabelKey] = {}
        self.needs: BlockNeeds = block_needs(tuple(stages))  # what blocks may be skipped

    def select(self, block: EntryBlock) -> np.ndarray[Any, np.dtype[np.intp]]:
        """Indexes (ascending) of the lines that pass the block-level filters."""
        mask = np.ones(len(block), dtype=np.bool_)
        if block.metadata is None:  # metadata could supply the label instead of the line
            for name, needle in self.prefilters:
                if name not in block.labels:
                    mask &= contains_mask(block, needle) | contains_mask(block, b"\\")
        order = sorted(range(len(self.block_filters)), key=self._rates.__getitem__)
        for k in order:
            before = int(np.count_nonzero(mask))
            if not before:  # the parsed-value prefilter may have dropped every line
                break
            mask = self.block_filters[k](block, mask)
            after = int(np.count_nonzero(mask))
            self._rates[k] = 0.5 * self._rates[k] + 0.5 * (after / before)
            if not after:
                break
        return np.flatnonzero(mask)

    def process(self, block: EntryBlock, idx: np.ndarray[Any, np.dtype[np.intp]],
                reverse: bool) -> Iterator[Processed]:
        """Run the per-line stages on the selected lines, newest first when `reverse`."""
        if reverse:
            idx = idx[::-1]
        # Only the selected lines' bounds and times (a rare match must not cost a list of
        # the whole block).
        order, starts = idx.tolist(), block.offsets[idx].tolist()
        ends, times = block.offsets[idx + 1].tolist(), block.ts[idx].tolist()
        blob = block.blob
        meta = block.metadata
        stream = dict(block.labels)
        base_key = label_key(stream)
        simple = not self.row_stages
        deadline, every = self.deadline, Deadline.CHECK_EVERY
        # detected_level: the same for the whole block, or worked out per line as lines
        # are taken (a query that needs 100 lines of a big block pays for 100).
        rules = self.levels
        level = block_level(rules, block) if rules is not None else None
        per_line = rules is not None and level is None
        from_stream = stream_level(rules, stream) if per_line and rules is not None else None
        for n, (i, a, b, t) in enumerate(zip(order, starts, ends, times, strict=True)):
            if deadline is not None and n % every == 0:
                deadline.check()
            line = blob[a:b].decode("utf-8", "replace")
            md = meta[i] if meta is not None else None
            if per_line and rules is not None:
                level = entry_level(rules, stream, md, line, from_stream)
            if simple and not md:
                if level is None:
                    yield t, line, base_key, ({} if self.categorize else None)
                elif self.categorize:
                    yield t, line, base_key, {"structuredMetadata": {DETECTED_LEVEL: level}}
                else:
                    yield t, line, self.level_key(base_key, level), None
                continue
            row = Row(t, line, dict(stream), {}, stream)
            if md:
                for k, v in md.items():
                    row.labels[k] = v
                    row.origin[k] = METADATA
            if level is not None:
                row.labels[DETECTED_LEVEL] = level
                row.origin[DETECTED_LEVEL] = METADATA
            if all(stage(row) for stage in self.row_stages):
                yield self._finish(row)

    def level_key(self, key: LabelKey, level: str) -> LabelKey:
        """`key` with `detected_level` added (cached: few streams, fewer levels)."""
        out = self._level_keys.get((key, level))
        if out is None:
            if len(self._level_keys) > 4096:
                self._level_keys.clear()
            out = self._level_keys[(key, level)] = label_key({**dict(key),
                                                              DETECTED_LEVEL: level})
        return out

    def _finish(self, row: Row) -> Processed:
        if not self.categorize:
            return row.ts, row.line, label_key(row.labels), None
        stream = {k: v for k, v in row.labels.items() if k not in row.origin}
        extra: dict[str, Any] = {}
        md = {k: row.labels[k] for k, o in row.origin.items() if o == METADATA}
        parsed = {k: row.labels[k] for k, o in row.origin.items() if o == PARSED}
        if md:
            extra["structuredMetadata"] = dict(sorted(md.items()))
        if parsed:
            extra["parsed"] = dict(sorted(parsed.items()))
        return row.ts, row.line, label_key(stream), extra


def selected_blocks(source: LogSource, ref: SeriesRef, pipeline: LogPipeline, start: int,
                    end: int, direction: str, stats: QueryStats,
                    pool: Executor | None = None,
                    ) -> Iterator[tuple[EntryBlock, np.ndarray[Any, Any]]]:
    """Each block of a series in [start, end) with the indexes of the lines that pass the
    block-level filters, counting what was read in `stats` (log and metric engines alike).

    With `pool`, the filters of the next blocks run on its threads while the caller works
    on this one (RE2 and numpy release the GIL): the series of a log query are filtered
    side by side. The blocks still come out one by one, in order, and the deadline is
    checked before each (`read_blocks`); blocks the pipeline's token needs rule out are
    not read (`BlockNeeds`, counted in `stats.blocks_skipped`)."""
    blocks = read_blocks(source, ref, start, end, direction, pipeline.deadline,
                         pipeline.prefilter, pipeline.needs.hints(dict(ref.labels)), stats)
    if pool is None:
        selected: Iterator[tuple[EntryBlock, Any]] = ((b, pipeline.select(b)) for b in blocks)
    else:
        selected = _read_ahead(blocks, pipeline, pool)
    for block, idx in selected:
        count_block(stats, block, len(idx))
        yield block, idx


def count_block(stats: QueryStats, block: EntryBlock, selected: int) -> None:
    """A block read, `selected` of its lines past the line filters."""
    stats.blocks_read += 1
    stats.lines_processed += len(block)
    stats.bytes_processed += block.nbytes
    if block.metadata is not None:
        stats.metadata_bytes += sum(len(k) + len(v) for md in block.metadata if md
                                    for k, v in md.items())
    stats.post_filter_lines += selected


def read_blocks(source: LogSource, ref: SeriesRef, start: int, end: int, direction: str,
                deadline: Deadline | None, prefilter: LinePrefilter | None,
                hints: ReadHints | None = None, stats: QueryStats | None = None,
                ) -> Generator[EntryBlock, None, None]:
    """The series' blocks clipped to [start, end), empty ones left out; the query's
    deadline is checked before each one is handed on (every engine reads through here).
    The source gets the deadline and the query's line prefilter too (`LogSource.blocks`),
    and `hints` when given (what it may leave unread: the blocks it skipped are added to
    `stats.blocks_skipped` once the read ends; its summaries stay on `hints`).
    Blocks are bounded in size: one chunk block (about 256 KiB of lines when flushed,
    1 MiB once compacted; `MemorySource`: `block_size` lines) or a stream's unflushed
    head, so one check per block bounds the time between two checks of the columnar
    stages, which work on whole blocks in C; the per-line stages also check every
    `Deadline.CHECK_EVERY` lines."""
    if hints is None:
        blocks = source.blocks(ref, start, end, direction, prefilter=prefilter,
                               deadline=deadline)
    else:
        blocks = source.blocks(ref, start, end, direction, prefilter=prefilter,
                               deadline=deadline, hints=hints)
    try:
        for b in blocks:
            if deadline is not None:
                deadline.check()
            b = b.clip(start, end)
            if len(b):
                yield b
    finally:  # closed early (an error, a probe of the first block): stop the source too
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
        if hints is not None and stats is not None:
            stats.blocks_skipped += hints.skipped
            hints.skipped = 0


READ_AHEAD = 2


def _read_ahead(blocks: Iterator[EntryBlock], pipeline: LogPipeline,
                pool: Executor) -> Iterator[tuple[EntryBlock, Any]]:
    """Blocks with their selected lines, the filters of up to `READ_AHEAD` later blocks
    running on `pool` meanwhile."""
    ahead: deque[tuple[EntryBlock, Future[Any]]] = deque()
    for b in blocks:
        ahead.append((b, pool.submit(pipeline.select, b)))
        if len(ahead) > READ_AHEAD:
            block, fut = ahead.popleft()
            yield block, fut.result()
    while ahead:
        block, fut = ahead.popleft()
        yield block, fut.result()


def _parsed_value_prefilters(stages: tuple[A.Stage, ...]) -> list[tuple[str, bytes]]:
    """`| json | level="error"`: such a line can only pass if it holds `error` as written
    (or an escape, which could spell it differently), so the line filter scan can drop the
    others before any JSON is parsed. Only for a parser directly followed by the filter,
    and applied only when the label is not a stream label or structured metadata."""
    if len(stages) < 2 or not isinstance(stages[0], (A.JsonParser, A.LogfmtParser)):
        return []
    lf = stages[1]
    if not isinstance(lf, A.LabelFilter):
        return []
    out: list[tuple[str, bytes]] = []
    pending: list[A.LabelFilterExpr] = [lf.expr]
    while pending:  # the equalities every passing line must satisfy (top-level `and`s)
        e = pending.pop()
        if isinstance(e, A.LabelBinary):
            if e.op == "and":
                pending += [e.left, e.right]
        elif e.kind == "string" and e.op == "=" and e.raw and not e.name.startswith("__"):
            out.append((e.name, e.raw.encode()))
    return out
