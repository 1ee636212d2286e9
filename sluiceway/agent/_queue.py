"""The agent's side of the shared `sluiceway.buffer`: the batcher and the queue.

A queue item is a finished push body (`sluiceway.ship.Push`): built once, when its batch
is complete, with the file ranges (checkpoints) its lines finish as its `meta`. It is
put with its line count, so the queue's bound and every figure count lines.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from sluiceway.agent._config import BatchConfig, QueueConfig
from sluiceway.agent._ledger import AgentLedger
from sluiceway.agent._positions import Checkpoint
from sluiceway.agent._records import Piece
from sluiceway.buffer import Buffer, BufferConfig
from sluiceway.model import LedgerGroup, encode_ledger, split_ledger_order
from sluiceway.ship import HEADER_BUDGET, Push, PushCodec
from sluiceway.wire import PushBuilder, PushFormat, cut_runs

log = logging.getLogger("sluiceway.agent")

# The buffer's drop reasons as the agent has always named them.
REASONS = {"full": "queue_full", "oldest": "queue_full_oldest", "closed": "shutdown",
           "spill_backlog": "spill_full", "timeout": "queue_full",
           "evicted": "queue_full_oldest", "encode": "spill_error", "decode": "spill_error"}


def renamed(drops: dict[str, int]) -> dict[str, int]:
    """The buffer's drop counts by reason, under the agent's names (`REASONS`)."""
    out: dict[str, int] = {}
    for r, n in drops.items():
        name = REASONS.get(r, r)
        out[name] = out.get(name, 0) + n
    return out


class Done(Protocol):
    """Where finished file ranges go: the positions tracker, or (several clients) the
    fan-in that hands a range on once every client's queue has it."""

    def done(self, checkpoints: list[Checkpoint] | list[list[object]]) -> None: ...

    def save(self, force: bool = False) -> None: ...


def buffer_config(q: QueueConfig, data_dir: Path) -> BufferConfig:
    return BufferConfig(
        max_items=q.capacity, max_bytes=q.max_bytes, when_full=q.when_full, drop=q.drop,
        spill_dir=data_dir / "spill", spill_max_bytes=q.spill_max_bytes,
        segment_bytes=min(64 * 1024**2, max(4096, q.spill_max_bytes // 16)),
        record_items=1, record_bytes=1, when_spill_full=q.when_spill_full)


def batch_lines(q: QueueConfig, b: BatchConfig) -> int:
    """Lines in one push: never more than the queue holds, so a batch always fits."""
    return max(1, min(b.max_lines, q.capacity))


class AgentQueue:
    """`Buffer[Push]` in lines, moving file positions as lines become safe or lost."""

    def __init__(self, q: QueueConfig, data_dir: Path, positions: Done,
                 name: str = "agent", ledger: AgentLedger | None = None) -> None:
        self.cfg = q
        self.positions = positions
        # The ledger notes the numbers this queue loses (the first client's lane: the
        # server the heartbeats go to); None for the other lanes.
        self.ledger = ledger
        self.buffer: Buffer[Push] = Buffer(buffer_config(q, data_dir), name=name,
                                           codec=PushCodec(), on_spilled=self._spilled,
                                           on_dropped=self._dropped)

    def put(self, push: Push, can_wait: bool = False) -> bool:
        ok = self.buffer.put(push, len(push.body), count=push.lines, can_wait=can_wait)
        if not ok and not (can_wait and self.buffer.closed):
            # Dropped by the policy and counted by the buffer: those lines are accounted,
            # so their file positions move on. (A file's lines refused at shutdown are
            # not: their positions stay, and the next run reads them again.)
            if self.ledger is not None:
                self.ledger.lose_pushes([push], self._refusal())
            self.positions.done(push.meta or [])
        return ok

    def _refusal(self) -> str:
        """The reason a put was refused, as the agent names it."""
        c = self.buffer.config
        if self.buffer.closed:
            return REASONS["closed"]
        if c.when_full == "spill":
            return "spill_full"
        return REASONS["timeout" if c.when_full == "block" else "full"]

    def _dropped(self, pushes: list[Push], reason: str) -> None:
        if self.ledger is not None:
            self.ledger.lose_pushes(pushes, REASONS.get(reason, reason))
        for p in pushes:
            self.positions.done(p.meta or [])

    def _spilled(self, pushes: list[Push]) -> None:
        for p in pushes:
            self.positions.done(p.meta or [])
        # Persist now, not at the next sync: a SIGKILL right after must not make the next
        # run read these lines from the file again while the spill still holds them.
        try:
            self.positions.save()
        except OSError as exc:
            log.error("cannot write positions after a spill: %s", exc)

    def done(self, pushes: list[Push]) -> None:
        """Shipped or counted lost: their ranges are done."""
        for p in pushes:
            self.positions.done(p.meta or [])

    def snapshot(self) -> dict[str, Any]:
        return self.buffer.stats()


class Batcher:
    """Collects pieces from all inputs into one push of up to `max_lines`/`max_bytes`,
    flushed when full or `max_wait` after the first piece. Each piece's entries are
    encoded as it comes (`PushBuilder`); `add` blocks when the queue blocks."""

    def __init__(self, cfg: BatchConfig, fmt: PushFormat, queue: AgentQueue,
                 positions: Done, max_lines: int | None = None) -> None:
        self.cfg, self.fmt, self.queue, self.positions = cfg, fmt, queue, positions
        self.max_lines = max_lines or cfg.max_lines
        self._lock = threading.Lock()
        self._builder = PushBuilder(fmt)
        self._cks: list[Checkpoint] = []
        self._numbers: list[LedgerGroup] = []
        self._header = 0  # bytes the push's ledger header will take, about
        self._putting = 0  # lines of a push waiting for room in the queue
        self._bytes = 0
        self._can_wait = True
        self._since = 0.0

    def add(self, pieces: list[Piece], lines: int, nbytes: int,
            checkpoints: list[Checkpoint], can_wait: bool = False,
            numbers: list[LedgerGroup] | None = None) -> None:
        if lines > self.max_lines:
            # Inputs without a per-read cap (stdin, syslog, demo) can hand over more than
            # one push's worth at once: cut it, checkpoints riding with the last part.
            parts = cut_runs(pieces, self.max_lines, Piece.cut)
            rest = numbers or []
            for i, part in enumerate(parts):
                n = sum(map(len, part))
                size = sum(len(line) for p in part for line in p.lines)
                mine, rest = split_ledger_order(rest, n)
                self._add(part, n, size, checkpoints if i == len(parts) - 1 else [],
                          can_wait, mine)
            return
        self._add(pieces, lines, nbytes, checkpoints, can_wait, numbers or [])

    def _add(self, pieces: list[Piece], lines: int, nbytes: int,
             checkpoints: list[Checkpoint], can_wait: bool,
             numbers: list[LedgerGroup]) -> None:
        cost = sum(len(g.source) * 3 + len(g.epoch) * 3 + 24 * len(g.runs) + 4
                   for g in numbers)
        with self._lock:
            b = self._builder
            if b.lines and (b.lines + lines > self.max_lines
                            or self._bytes + nbytes > self.cfg.max_bytes
                            or self._header + cost > HEADER_BUDGET):
                self._flush()
            self._numbers.extend(numbers)
            self._header += cost
            if not (b.lines or self._cks):
                self._since = time.monotonic()
            for p in pieces:
                self._builder.add(p.labels, p.ts, p.lines, metadata=p.metadata)
            self._cks.extend(checkpoints)
            self._bytes += nbytes
            self._can_wait = self._can_wait and can_wait
            if (self._builder.lines >= self.max_lines
                    or self._bytes >= self.cfg.max_bytes):
                self._flush()

    def tick(self, force: bool = False) -> None:
        with self._lock:
            if (self._builder.lines or self._cks) and (
                    force or time.monotonic() - self._since >= self.cfg.max_wait):
                self._flush()

    @property
    def lines(self) -> int:
        """Lines waiting here: for their push, or in a push waiting for the queue."""
        return self._builder.lines + self._putting

    def _flush(self) -> None:
        builder, cks, can_wait = self._builder, self._cks, self._can_wait
        numbers = _merged(self._numbers)
        self._builder, self._cks, self._bytes, self._can_wait = PushBuilder(self.fmt), [], 0, True
        self._numbers, self._header = [], 0
        if not builder.lines:
            self.positions.done(cks)  # everything was filtered out: nothing to ship
            return
        self._putting = builder.lines
        try:
            self.queue.put(Push(builder.body(), self.fmt, builder.lines, cks,
                                encode_ledger(numbers) if numbers else None), can_wait)
        finally:
            self._putting = 0


def _merged(groups: list[LedgerGroup]) -> list[LedgerGroup]:
    """Groups of one (source, epoch) in a row joined, runs that touch joined."""
    out: list[LedgerGroup] = []
    for g in groups:
        if out and (out[-1].source, out[-1].epoch) == (g.source, g.epoch):
            runs = out[-1].runs
            for a, b in g.runs:
                if runs and runs[-1][1] == a:
                    runs[-1] = (runs[-1][0], b)
                else:
                    runs.append((a, b))
        else:
            out.append(LedgerGroup(g.source, g.epoch, list(g.runs)))
    return out
