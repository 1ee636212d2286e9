"""Adapts the store to the query engine's `LogSource` protocol (Loki's querier role)."""

from __future__ import annotations

from collections.abc import Iterator

from sluiceway.logql import LogSource, SeriesRef
from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import Store, StoreSeries


class StoreSource:
    """The query's deadline is the engine's (`QueryParams.deadline`), checked per block
    and inside long blocks."""

    def __init__(self, store: Store) -> None:
        self.store = store
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
        return self.store.blocks(StoreSeries(ref.tenant, ref.fp, dict(ref.labels)), start,
                                 end, direction, self._warn)


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

    def blocks(self, ref: SeriesRef, start: int, end: int,
               direction: str) -> Iterator[EntryBlock]:
        start = max(start, self.floor)
        return self.inner.blocks(ref, start, end, direction) if start < end else iter(())
