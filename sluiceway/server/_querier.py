"""Adapts the store to the query engine's `LogSource` protocol (Loki's querier role)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from sluiceway.logql import ExecOptions, QueryCancelled, SeriesRef, too_many_bytes
from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import Store, StoreSeries


class QueryTimeout(Exception):
    """The query ran past `limits.query_timeout` (HTTP 504)."""


class StoreSource:
    """`deadline` (time.monotonic) is checked before each block, so a query that scans too
    much stops between blocks instead of holding a worker thread until it is done; so are
    the query's cancel flag (its client went away) and `max_query_bytes_read`. Blocks are
    handed to several query threads at once: the byte count is kept under a lock."""

    def __init__(self, store: Store, deadline: float | None = None,
                 timeout_s: float = 0.0, options: ExecOptions | None = None,
                 on_block: Callable[[], None] | None = None) -> None:
        self.store = store
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.options = options
        self.on_block = on_block
        self.bytes_read = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """Changes when stored data changes other than by new lines (compaction,
        retention): the results cache keys on it."""
        return self.store.generation

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        return [SeriesRef(s.tenant, s.fp, s.labels)
                for s in self.store.series(tenants, matchers, start, end)]

    def blocks(self, ref: SeriesRef, start: int, end: int,
               direction: str) -> Iterator[EntryBlock]:
        blocks = self.store.blocks(StoreSeries(ref.tenant, ref.fp, dict(ref.labels)), start,
                                   end, direction)
        if self.deadline is None and self.options is None and self.on_block is None:
            return blocks
        return self._checked(blocks)

    def _checked(self, blocks: Iterator[EntryBlock]) -> Iterator[EntryBlock]:
        opts = self.options
        for b in blocks:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise QueryTimeout(f"query timed out after {self.timeout_s:g}s (query_timeout):"
                                   " narrow the time range or the stream selector")
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
