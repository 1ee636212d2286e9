"""Adapts the store to the query engine's `LogSource` protocol (Loki's querier role)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from sluiceway.logql import SeriesRef
from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import Store, StoreSeries


class QueryTimeout(Exception):
    """The query ran past `limits.query_timeout` (HTTP 504)."""


class StoreSource:
    """`deadline` (time.monotonic) is checked before each block, so a query that scans too
    much stops between blocks instead of holding a worker thread until it is done."""

    def __init__(self, store: Store, deadline: float | None = None,
                 timeout_s: float = 0.0) -> None:
        self.store = store
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.warnings: list[str] = []  # chunks left out of the answer (Loki's `warnings`)

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        return [SeriesRef(s.tenant, s.fp, s.labels)
                for s in self.store.series(tenants, matchers, start, end)]

    def blocks(self, ref: SeriesRef, start: int, end: int,
               direction: str) -> Iterator[EntryBlock]:
        blocks = self.store.blocks(StoreSeries(ref.tenant, ref.fp, dict(ref.labels)), start,
                                   end, direction, self._warn)
        return blocks if self.deadline is None else self._checked(blocks)

    def _checked(self, blocks: Iterator[EntryBlock]) -> Iterator[EntryBlock]:
        assert self.deadline is not None
        for b in blocks:
            if time.monotonic() > self.deadline:
                raise QueryTimeout(f"query timed out after {self.timeout_s:g}s (query_timeout):"
                                   " narrow the time range or the stream selector")
            yield b
