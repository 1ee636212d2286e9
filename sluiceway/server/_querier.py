"""Adapts the store to the query engine's `LogSource` protocol (Loki's querier role)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from sluiceway.logql import ExecOptions, LogSource, QueryCancelled, SeriesRef, too_many_bytes
from sluiceway.model import BlockSummary, EntryBlock, Matcher, ReadHints
from sluiceway.store import Store, StoreSeries


class StoreSource:
    """The query's deadline is the engine's (`QueryParams.deadline`), checked per block
    and inside long blocks. Here, before each block: the query's cancel flag (its client
    went away) and `max_query_bytes_read`, then `on_block` (a metric). Blocks are handed
    to several query threads at once: the byte count is kept under a lock. Chunks that
    cannot be read are left out and named in `warnings` (Loki's top-level `warnings`)."""

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
        return [SeriesRef(s.tenant, s.fp, s.labels)
                for s in self.store.series(tenants, matchers, start, end)]

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               hints: ReadHints | None = None) -> Iterator[EntryBlock | BlockSummary]:
        blocks = self.store.read(StoreSeries(ref.tenant, ref.fp, dict(ref.labels)), start,
                                 end, direction, self._warn, hints)
        if self.options is None and self.on_block is None:
            return blocks
        return self._checked(blocks)

    def _checked(self, blocks: Iterator[EntryBlock | BlockSummary]
                 ) -> Iterator[EntryBlock | BlockSummary]:
        opts = self.options
        for b in blocks:
            if opts is not None:
                if opts.cancel.is_set():
                    raise QueryCancelled("query cancelled: the client disconnected")
                if opts.max_bytes_read:
                    with self._lock:
                        self.bytes_read += b.nbytes
                        read = self.bytes_read
                    if read > opts.max_bytes_read:
                        raise too_many_bytes(read, opts.max_bytes_read)
            if self.on_block is not None:
                self.on_block()
            yield b


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
               hints: ReadHints | None = None) -> Iterator[EntryBlock | BlockSummary]:
        start = max(start, self.floor)
        return self.inner.blocks(ref, start, end, direction, hints=hints) if start < end \
            else iter(())
