"""Live tail: every accepted push is offered to the open tail sessions of its tenant.

Each session runs the tail query through the normal LogQL engine over just the new blocks,
so filters, parsers and formatting behave exactly as in `query_range`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from sluiceway.logql import SeriesRef
from sluiceway.model import EntryBlock, Matcher, fingerprint, matches_all


class BlocksSource:
    """A `LogSource` over a handful of blocks held in memory (one push, for tail)."""

    def __init__(self, tenant: str, blocks: list[EntryBlock]) -> None:
        self.tenant = tenant
        self.by_fp: dict[int, list[EntryBlock]] = {}
        for b in blocks:
            self.by_fp.setdefault(fingerprint(b.labels), []).append(b)

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        if self.tenant not in tenants:
            return []
        return [SeriesRef(self.tenant, fp, bs[0].labels) for fp, bs in self.by_fp.items()
                if matches_all(matchers, bs[0].labels)]

    def blocks(self, ref: SeriesRef, start: int, end: int,
               direction: str) -> Iterator[EntryBlock]:
        from sluiceway.store._blocks import sort_dedupe

        merged = sort_dedupe(EntryBlock.concat(self.by_fp.get(ref.fp, []))).clip(start, end)
        if len(merged):
            yield merged


@dataclass(eq=False)
class TailSession:
    tenants: list[str]
    queue: asyncio.Queue[tuple[str, list[EntryBlock]]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: int = 0


class TailHub:
    def __init__(self) -> None:
        self.sessions: set[TailSession] = set()

    def open(self, tenants: list[str]) -> TailSession:
        s = TailSession(tenants)
        self.sessions.add(s)
        return s

    def close(self, s: TailSession) -> None:
        self.sessions.discard(s)

    def publish(self, tenant: str, blocks: list[EntryBlock]) -> None:
        """Called on the event loop after a push is durable; never blocks the push."""
        for s in self.sessions:
            if tenant in s.tenants:
                try:
                    s.queue.put_nowait((tenant, blocks))
                except asyncio.QueueFull:
                    s.dropped += sum(len(b) for b in blocks)
