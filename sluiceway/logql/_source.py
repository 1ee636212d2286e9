"""The store ⇄ logql contract (`LogSource`, `SeriesRef`) and an in-memory implementation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sluiceway.model import (
    BlockSummary,
    EntryBlock,
    Matcher,
    Metadata,
    ReadHints,
    StreamBatch,
    fingerprint,
    matches_all,
)


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """One series of one tenant; `labels` are the stream labels."""

    tenant: str
    fp: int
    labels: Mapping[str, str] = field(compare=False, hash=False)


class LogSource(Protocol):
    """What the engine reads from: the store, or `MemorySource` in tests."""

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        """Series of `tenants` matching all `matchers` with data in [start, end)."""
        ...

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               hints: ReadHints | None = None) -> Iterator[EntryBlock | BlockSummary]:
        """Entries of `ref` in [start, end): time-disjoint blocks in `direction` order
        (forward = oldest block first), ascending inside a block, exact duplicates removed.
        `hints` (`ReadHints`): blocks may be left out that hold no line with all of
        `hints.tokens`, and with `hints.summary_grid` blocks may come as `BlockSummary`s
        (never otherwise); what was left out is counted on `hints`."""
        ...


@dataclass(slots=True)
class _Series:
    ref: SeriesRef
    ts: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    metadata: list[Metadata | None] = field(default_factory=list)
    sorted_blocks: list[EntryBlock] | None = None


class MemorySource:
    """A `LogSource` over entries held in memory, cut into blocks of `block_size` entries.

    `blocks_read` counts blocks handed out, so tests can check that queries stop early.
    """

    def __init__(self, block_size: int = 64) -> None:
        self.block_size = block_size
        self._series: dict[tuple[str, int], _Series] = {}
        self.blocks_read = 0

    def push(self, tenant: str, batches: Iterable[StreamBatch]) -> None:
        for b in batches:
            fp = fingerprint(b.labels)
            s = self._series.get((tenant, fp))
            if s is None:
                s = _Series(SeriesRef(tenant, fp, dict(b.labels)))
                self._series[(tenant, fp)] = s
            meta = b.metadata or [None] * len(b.ts)
            for ts, line, md in zip(b.ts, b.lines, meta, strict=True):
                s.ts.append(ts)
                s.lines.append(line.encode())
                s.metadata.append(md or None)
            s.sorted_blocks = None

    def _blocks_of(self, s: _Series) -> list[EntryBlock]:
        if s.sorted_blocks is None:
            order = sorted(range(len(s.ts)), key=lambda i: s.ts[i])
            seen: set[tuple[int, bytes]] = set()
            keep = []
            for i in order:
                if (s.ts[i], s.lines[i]) not in seen:
                    seen.add((s.ts[i], s.lines[i]))
                    keep.append(i)
            blocks = []
            for j in range(0, len(keep), self.block_size):
                idx = keep[j : j + self.block_size]
                md = [s.metadata[i] for i in idx]
                blocks.append(EntryBlock.from_lines(
                    dict(s.ref.labels), np.array([s.ts[i] for i in idx], dtype=np.int64),
                    [s.lines[i] for i in idx], md if any(md) else None))
            s.sorted_blocks = blocks
        return s.sorted_blocks

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        out = []
        for (tenant, _), s in self._series.items():
            if tenant not in tenants or not matches_all(matchers, dict(s.ref.labels)):
                continue
            if any(start <= t < end for t in s.ts):
                out.append(s.ref)
        return out

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        blocks = self._blocks_of(self._series[(ref.tenant, ref.fp)])
        if direction == "backward":
            blocks = blocks[::-1]
        for b in blocks:
            if not len(b) or b.ts[-1] < start or b.ts[0] >= end:
                continue
            lo = int(np.searchsorted(b.ts, start, "left"))
            hi = int(np.searchsorted(b.ts, end, "left"))
            self.blocks_read += 1
            yield b if (lo, hi) == (0, len(b)) else b.take(np.arange(lo, hi))
