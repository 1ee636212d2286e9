"""Adapts the store to the query engine's `LogSource` protocol (Loki's querier role): the
one way every read endpoint reaches stored data."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from sluiceway.logql import (
    Deadline,
    DerivedSource,
    ExecOptions,
    IndexStats,
    LinePrefilter,
    LogSource,
    QueryCancelled,
    SeriesVolume,
    too_many_bytes,
)
from sluiceway.model import BlockSummary, EntryBlock, Matcher, ReadHints, SeriesRef
from sluiceway.store import Store


class StoreSource(DerivedSource):
    """The `LogSource` over the single-node store. The store holds no lock while it
    scans a tenant's streams, so no read here delays a push (of any tenant).

    The query's deadline is the engine's (`QueryParams.deadline`), checked per block
    and inside long blocks; it is checked here too, before each block, with the query's
    cancel flag (its client went away) and `max_query_bytes_read`, then `on_block` (a
    metric). Blocks are handed to several query threads at once: the byte count is kept
    under a lock. Chunks that cannot be read are left out and named in `warnings`
    (Loki's top-level `warnings`). The line prefilter is not used yet: every line of a
    chunk is decoded anyway (chunk format v2's block filters will use it)."""

    def __init__(self, store: Store, options: ExecOptions | None = None,
                 on_block: Callable[[], None] | None = None) -> None:
        self.store = store
        self.options = options
        self.on_block = on_block
        self.bytes_read = 0
        self._lock = threading.Lock()
        self.warnings: list[str] = []  # chunks left out of the answer (Loki's `warnings`)

    def _warn(self, msg: str) -> None:
        with self._lock:  # query threads read chunks side by side
            if msg not in self.warnings:
                self.warnings.append(msg)

    @property
    def generation(self) -> int:
        """Changes when stored data changes other than by new lines (compaction,
        retention, a chunk taken out of service): the results cache keys on it."""
        return self.store.generation

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        return self.store.series(tenants, matchers, start, end)

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        limited = self.options is not None and self.options.max_bytes_read > 0
        blocks = self.store.blocks(ref, start, end, direction, self._warn, hints,
                                   self._count_summary if limited else None)
        if self.options is None and self.on_block is None and deadline is None:
            return blocks
        return self._checked(blocks, deadline)

    def _count_bytes(self, n: int) -> None:
        """`max_query_bytes_read` (Loki's: what the query covers, read or not)."""
        opts = self.options
        if opts is None or not opts.max_bytes_read:
            return
        with self._lock:
            self.bytes_read += n
            read = self.bytes_read
        if read > opts.max_bytes_read:
            raise too_many_bytes(read, opts.max_bytes_read)

    def _count_summary(self, summary: BlockSummary) -> None:
        self._count_bytes(summary.nbytes)

    def _checked(self, blocks: Iterator[EntryBlock],
                 deadline: Deadline | None) -> Iterator[EntryBlock]:
        opts = self.options
        for b in blocks:
            if deadline is not None:
                deadline.check()
            if opts is not None:
                if opts.cancel.is_set():
                    raise QueryCancelled("query cancelled: the client disconnected")
                self._count_bytes(b.nbytes)
            if self.on_block is not None:
                self.on_block()
            yield b

    def stats(self, tenants: list[str], matchers: list[Matcher], start: int,
              end: int) -> IndexStats:
        """From chunk metadata alone: nothing is decoded."""
        return IndexStats(**self.store.index_stats(tenants, matchers, start, end))



class LookbackSource:
    """A `LogSource` that reads nothing before `floor` (Unix ns): `max_query_lookback`
    also cuts the range windows of a metric query, as Loki's querier does."""

    def __init__(self, inner: LogSource, floor: int) -> None:
        self.inner = inner
        self.floor = floor

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        start = max(start, self.floor)
        return self.inner.series(tenants, matchers, start, end) if start < end else []

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        start = max(start, self.floor)
        if start >= end:
            return iter(())
        return self.inner.blocks(ref, start, end, direction, prefilter=prefilter,
                                 deadline=deadline, hints=hints)

    def label_names(self, tenants: list[str], matchers: list[Matcher], start: int,
                    end: int) -> list[str]:
        start = max(start, self.floor)
        return self.inner.label_names(tenants, matchers, start, end) if start < end else []

    def label_values(self, tenants: list[str], name: str, matchers: list[Matcher],
                     start: int, end: int) -> list[str]:
        start = max(start, self.floor)
        if start >= end:
            return []
        return self.inner.label_values(tenants, name, matchers, start, end)

    def stats(self, tenants: list[str], matchers: list[Matcher], start: int,
              end: int) -> IndexStats:
        start = max(start, self.floor)
        return self.inner.stats(tenants, matchers, start, end) if start < end \
            else IndexStats()

    def volume(self, tenants: list[str], matchers: list[Matcher], start: int, end: int,
               edges: npt.NDArray[np.int64], *,
               deadline: Deadline | None = None) -> list[SeriesVolume]:
        start = max(start, self.floor)
        if start >= end:
            return []
        return self.inner.volume(tenants, matchers, start, end, edges, deadline=deadline)
