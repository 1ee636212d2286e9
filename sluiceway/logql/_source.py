"""The one way into data for every read: the `LogSource` contract, `SeriesRef`, and an
in-memory implementation.

Every read endpoint goes through a `LogSource`: queries (`series`, `blocks`), label names
and values, index stats and volume. Implementations: the server's `StoreSource` (over
`sluiceway.store.Store`) and its wrappers (`MultiTenantSource`, `LookbackSource`), live
tail's `BlocksSource` (one push), and `MemorySource` here; a remote implementation
(cluster mode) answers the same calls next to the data, which is why `blocks` takes the
query's line prefilter and deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sluiceway.logql._filters import LinePrefilter
from sluiceway.logql._limits import Deadline
from sluiceway.model import (
    EntryBlock,
    Matcher,
    ReadHints,
    SeriesRef,
    StreamBatch,
    fingerprint,
    in_read_order,
    matches_all,
    merge_blocks,
    sort_dedupe,
)

I64 = npt.NDArray[np.int64]
SeriesVolume = tuple[SeriesRef, I64]


@dataclass(slots=True)
class IndexStats:
    """Loki's /index/stats: the series matched, and the chunks overlapping the range with
    their entries and bytes (whole chunks, as Loki counts them from chunk metadata)."""

    streams: int = 0
    chunks: int = 0
    entries: int = 0
    bytes: int = 0

    def add(self, other: IndexStats) -> None:
        self.streams += other.streams
        self.chunks += other.chunks
        self.entries += other.entries
        self.bytes += other.bytes


class LogSource(Protocol):
    """What every read endpoint reads from. Times are Unix ns, ranges are [start, end)."""

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        """Series of `tenants` matching all `matchers` with data in [start, end)."""
        ...

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        """Entries of `ref` in [start, end): time-disjoint blocks in `direction` order
        (forward = oldest block first), ascending inside a block, exact duplicates removed.
        `prefilter`: lines without its literals may be left out (`LinePrefilter`).
        `deadline`: checked before each block is handed out (`QueryTimeout`), so a source
        that works away from the engine stops too. `hints` (`ReadHints`, one per call):
        blocks holding no line with every one of `hints.tokens` may be left out (counted
        in `hints.skipped`), and with `hints.summary_grid` a block may be left unread and
        its `BlockSummary` put in `hints.summaries`."""
        ...

    def label_names(self, tenants: list[str], matchers: list[Matcher], start: int,
                    end: int) -> list[str]:
        """Sorted label names of the series `series` would give."""
        ...

    def label_values(self, tenants: list[str], name: str, matchers: list[Matcher],
                     start: int, end: int) -> list[str]:
        """Sorted values of label `name` among the series `series` would give."""
        ...

    def stats(self, tenants: list[str], matchers: list[Matcher], start: int,
              end: int) -> IndexStats:
        """The series `series` would give, and their chunks overlapping [start, end)."""
        ...

    def volume(self, tenants: list[str], matchers: list[Matcher], start: int, end: int,
               edges: I64, *, deadline: Deadline | None = None) -> list[SeriesVolume]:
        """Per series `series` would give: bytes of its lines in [start, end), one sum per
        bucket [edges[i], edges[i+1]) (a line past the last edge counts in the last)."""
        ...


def until_deadline(blocks: Iterable[EntryBlock],
                   deadline: Deadline | None) -> Iterator[EntryBlock]:
    """`blocks`, the deadline checked before each is handed out (`QueryTimeout`)."""
    for b in blocks:
        if deadline is not None:
            deadline.check()
        yield b


def names_of(refs: Iterable[SeriesRef]) -> list[str]:
    return sorted({k for r in refs for k in r.labels})


def values_of(refs: Iterable[SeriesRef], name: str) -> list[str]:
    return sorted({r.labels[name] for r in refs if name in r.labels})


def bucket_bytes(blocks: Iterable[EntryBlock], edges: I64,
                 deadline: Deadline | None = None) -> I64:
    """Bytes of the blocks' lines per bucket of `edges` (`LogSource.volume`); the
    deadline is checked before each block."""
    nb = len(edges) - 1
    sums = np.zeros(nb, dtype=np.int64)
    for b in blocks:
        if deadline is not None:
            deadline.check()
        sizes = np.diff(b.offsets)
        if nb == 1:
            sums[0] += int(sizes.sum())
        else:
            idx = np.minimum(np.searchsorted(edges, b.ts, "right") - 1, nb - 1)
            sums += np.bincount(idx, weights=sizes, minlength=nb).astype(np.int64)
    return sums


class DerivedSource:
    """A base for sources that hold their entries as blocks: label names and values,
    stats and volume derived from `series` and `blocks` (each block counts as a chunk)."""

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        raise NotImplementedError

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        raise NotImplementedError

    def label_names(self, tenants: list[str], matchers: list[Matcher], start: int,
                    end: int) -> list[str]:
        return names_of(self.series(tenants, matchers, start, end))

    def label_values(self, tenants: list[str], name: str, matchers: list[Matcher],
                     start: int, end: int) -> list[str]:
        return values_of(self.series(tenants, matchers, start, end), name)

    def stats(self, tenants: list[str], matchers: list[Matcher], start: int,
              end: int) -> IndexStats:
        out = IndexStats()
        for ref in self.series(tenants, matchers, start, end):
            out.streams += 1
            for b in self.chunks(ref, start, end):
                out.chunks += 1
                out.entries += len(b)
                out.bytes += b.nbytes
        return out

    def chunks(self, ref: SeriesRef, start: int, end: int) -> Iterable[EntryBlock]:
        """What `stats` counts as the chunks of `ref` overlapping [start, end): by default
        the blocks of the range."""
        return self.blocks(ref, start, end, "forward")

    def volume(self, tenants: list[str], matchers: list[Matcher], start: int, end: int,
               edges: I64, *, deadline: Deadline | None = None) -> list[SeriesVolume]:
        return [(ref, bucket_bytes(self.blocks(ref, start, end, "forward",
                                               deadline=deadline), edges, deadline))
                for ref in self.series(tenants, matchers, start, end)]


@dataclass(slots=True)
class _Series:
    ref: SeriesRef
    pieces: list[EntryBlock] = field(default_factory=list)  # each sorted, deduplicated
    sorted_blocks: list[EntryBlock] | None = None


class MemorySource(DerivedSource):
    """A `LogSource` over entries held in memory, cut into blocks of `block_size` entries.

    `blocks_read` counts blocks handed out (before the prefilter), so tests can check
    that queries stop early. With `prefilter=True` it leaves out the lines a query's
    `LinePrefilter` excludes, as a source that filters next to the data would (tests of
    the engine over such a source); by default it hands out every line.
    """

    def __init__(self, block_size: int = 64, prefilter: bool = False) -> None:
        self.block_size = block_size
        self.apply_prefilter = prefilter
        self._series: dict[tuple[str, int], _Series] = {}
        self.blocks_read = 0

    def push(self, tenant: str, batches: Iterable[StreamBatch]) -> None:
        for b in batches:
            if not b.ts:
                continue
            fp = fingerprint(b.labels)
            s = self._series.get((tenant, fp))
            if s is None:
                s = _Series(SeriesRef(tenant, fp, dict(b.labels)))
                self._series[(tenant, fp)] = s
            md = [m or None for m in b.metadata] if b.metadata else None
            block = EntryBlock.from_lines(dict(s.ref.labels), np.array(b.ts, dtype=np.int64),
                                          [line.encode() for line in b.lines],
                                          md if md and any(md) else None)
            s.pieces.append(sort_dedupe(block))
            s.sorted_blocks = None

    def _blocks_of(self, s: _Series) -> list[EntryBlock]:
        """The series' entries as one sorted, deduplicated run (`merge_blocks`), cut into
        blocks of `block_size`."""
        if s.sorted_blocks is None:
            spans = in_read_order(((int(p.ts[0]), int(p.ts[-1]), p) for p in s.pieces),
                                  "forward")
            merged = list(merge_blocks([(a, b) for a, b, _ in spans],
                                       (p for _, _, p in spans), "forward", -2**63, 2**63 - 1))
            run = EntryBlock.concat(merged) if merged else None
            blocks = []
            for j in range(0, len(run) if run is not None else 0, self.block_size):
                assert run is not None
                b = run.slice(j, j + self.block_size).compacted()
                if b.metadata is not None and not any(b.metadata):
                    b.metadata = None
                blocks.append(b)
            s.sorted_blocks = blocks
        return s.sorted_blocks

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        out = []
        for (tenant, _), s in self._series.items():
            if tenant not in tenants or not matches_all(matchers, dict(s.ref.labels)):
                continue
            if any(len(p.clip(start, end)) for p in s.pieces):
                out.append(s.ref)
        return out

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        s = self._series.get((ref.tenant, ref.fp))
        blocks = self._blocks_of(s) if s is not None else []
        if direction == "backward":
            blocks = blocks[::-1]
        for b in until_deadline(blocks, deadline):
            if not len(b) or b.ts[-1] < start or b.ts[0] >= end:
                continue
            self.blocks_read += 1
            b = b.clip(start, end)
            if prefilter is not None and self.apply_prefilter:
                b = prefilter.apply(b)
            if len(b):
                yield b
