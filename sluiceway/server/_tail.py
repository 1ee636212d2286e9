"""Live tail: every accepted push is offered to the open tail sessions of its tenant.

Each session runs the tail query through the normal LogQL engine over just the new blocks,
so filters, parsers and formatting behave exactly as in `query_range`.

Sessions are bounded, so slow or many clients cannot slow the pushes or fill memory: a
tenant has at most `max_concurrent_tail_requests` of them (Loki's limit and error), and
a session holds at most `max_tail_buffer_size` bytes of matching lines its client has not
taken yet (or a single push, when it holds nothing else). A push that does not fit is
dropped for that session only, counted, and listed to its client in Loki's
`dropped_entries` with the next frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluiceway.logql import Deadline, DerivedSource, LinePrefilter, until_deadline
from sluiceway.model import (
    EntryBlock,
    Matcher,
    ReadHints,
    SeriesRef,
    fingerprint,
    in_read_order,
    matches_all,
    merge_blocks,
    sort_dedupe,
)

log = logging.getLogger("sluiceway.server")
# Loki lists at most this many dropped entries per tail frame (and counts the rest).
MAX_DROPPED_LISTED = 1000


class BlocksSource(DerivedSource):
    """A `LogSource` over a handful of blocks held in memory (one push, for tail)."""

    def __init__(self, tenant: str, blocks: list[EntryBlock]) -> None:
        self.tenant = tenant
        self.by_fp: dict[int, list[EntryBlock]] = {}
        for b in blocks:
            if len(b):
                self.by_fp.setdefault(fingerprint(b.labels), []).append(sort_dedupe(b))

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        if self.tenant not in tenants:
            return []
        return [SeriesRef(self.tenant, fp, bs[0].labels) for fp, bs in self.by_fp.items()
                if matches_all(matchers, bs[0].labels)
                and any(len(b.clip(start, end)) for b in bs)]

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        spans = in_read_order(((int(b.ts[0]), int(b.ts[-1]), b)
                               for b in self.by_fp.get(ref.fp, []) if ref.tenant == self.tenant),
                              direction)
        return until_deadline(merge_blocks([(a, z) for a, z, _ in spans],
                                           (b for _, _, b in spans), direction, start, end),
                              deadline)


class TailLimitExceeded(Exception):
    """A tenant already has `max_concurrent_tail_requests` live tails (Loki's text)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"max concurrent tail requests limit exceeded, count > limit "
                         f"({count} > {limit})")


@dataclass(slots=True)
class TailItem:
    """The blocks of one push that a session's selector matches, and the bytes they hold."""

    tenant: str
    blocks: list[EntryBlock]
    nbytes: int


def _held(block: EntryBlock) -> EntryBlock:
    """The block as a session keeps it: blocks of a push share the push's buffer, so a
    small one is copied out rather than keeping the whole push alive."""
    return block.compacted() if len(block.blob) > 2 * block.nbytes + 4096 else block


def _held_bytes(block: EntryBlock) -> int:
    return len(block.blob) + 16 * len(block)  # lines, timestamps and offsets


@dataclass(eq=False)
class TailSession:
    """One live tail: the pushes waiting for its client, at most `max_bytes` of them."""

    tenants: list[str]
    matchers: list[Matcher] = field(default_factory=list)
    max_bytes: int = 4 << 20
    items: deque[TailItem] = field(default_factory=deque)
    buffered: int = 0  # bytes queued, or being sent (released by `done`)
    dropped_total: int = 0
    _unreported: int = 0  # dropped since the last frame
    _listed: list[tuple[dict[str, str], int]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, tenant: str, blocks: list[EntryBlock]) -> int:
        """Queue the matching part of a push, or drop it if it does not fit (returns the
        number of entries dropped). Never blocks: this runs in the push's path."""
        mine = [b for b in blocks if len(b) and matches_all(self.matchers, b.labels)]
        if not mine:
            return 0
        held = [_held(b) for b in mine]
        size = sum(_held_bytes(b) for b in held)
        if self.buffered and self.buffered + size > self.max_bytes:
            n = sum(len(b) for b in mine)
            room = MAX_DROPPED_LISTED - len(self._listed)
            for b in mine:
                if room <= 0:
                    break
                self._listed += [(b.labels, t) for t in b.ts[:room].tolist()]
                room -= len(b)
            self.dropped_total += n
            self._unreported += n
            self._wake.set()
            return n
        self.items.append(TailItem(tenant, held, size))
        self.buffered += size
        self._wake.set()
        return 0

    async def next(self) -> TailItem | None:
        """The oldest waiting push; None when there is only a drop to report."""
        while not self.items and not self._unreported:
            self._wake.clear()
            await self._wake.wait()
        return self.items.popleft() if self.items else None

    def done(self, item: TailItem) -> None:
        """`item` was sent (or found nothing to send): its bytes are free."""
        self.buffered -= item.nbytes

    def take_dropped(self) -> list[dict[str, Any]]:
        """Loki's `dropped_entries` for the next frame: labels and ns timestamp."""
        out = [{"labels": labels, "timestamp": str(ts)} for labels, ts in self._listed]
        self._listed = []
        self._unreported = 0
        return out

    def release(self) -> None:
        self.items.clear()
        self.buffered = 0


class TailLimits(Protocol):
    @property
    def max_concurrent_tail_requests(self) -> int: ...

    @property
    def max_tail_buffer_size(self) -> int: ...


class TailHub:
    """The open sessions; `publish` offers each accepted push to those of its tenant.
    `limits_of(tenant)` gives a tenant's limits (its runtime overrides)."""

    def __init__(self, limits_of: Callable[[str], TailLimits]) -> None:
        self.limits_of = limits_of
        self.sessions: set[TailSession] = set()
        self.dropped: dict[str, int] = {}  # entries dropped for slow clients, by tenant
        self.refused: dict[str, int] = {}  # tails refused by max_concurrent_tail_requests

    def count(self, tenant: str) -> int:
        return sum(1 for s in self.sessions if tenant in s.tenants)

    def open(self, tenants: list[str], matchers: Sequence[Matcher] = ()) -> TailSession:
        """A new session; raises TailLimitExceeded when a tenant has its maximum. It
        holds at most the smallest `max_tail_buffer_size` of its tenants."""
        limits = [self.limits_of(t) for t in tenants]
        for t, lim in zip(tenants, limits, strict=True):
            most = lim.max_concurrent_tail_requests
            n = self.count(t)
            if most and n >= most:
                self.refused[t] = self.refused.get(t, 0) + 1
                raise TailLimitExceeded(n + 1, most)
        s = TailSession(list(tenants), list(matchers),
                        min(lim.max_tail_buffer_size for lim in limits))
        self.sessions.add(s)
        return s

    def close(self, s: TailSession) -> None:
        self.sessions.discard(s)
        s.release()

    def buffered_bytes(self) -> int:
        return sum(s.buffered for s in self.sessions)

    def publish(self, tenant: str, blocks: list[EntryBlock]) -> None:
        """Called on the event loop after a push is durable; never blocks the push."""
        for s in self.sessions:
            if tenant in s.tenants:
                first = not s.dropped_total
                n = s.offer(tenant, blocks)
                if n:
                    self.dropped[tenant] = self.dropped.get(tenant, 0) + n
                    if first:
                        log.warning("live tail for tenant(s) %s: the client is not keeping "
                                    "up, entries are dropped (max_tail_buffer_size %d bytes "
                                    "held); it gets them as dropped_entries",
                                    ",".join(s.tenants), s.max_bytes)
