"""The agent's side of the ledger (ARCHITECTURE.md §ledger): each input is a source;
a file's content is an epoch numbered from its first line read (kept with its position,
`_positions.py`), stdin, syslog, journal, the push input and the demo input number
their entries per run. This module notes the numbers each lane's queue and delivery
lose, and builds each lane's heartbeat ledger group.

Numbers of sources this agent does not number itself are *carried*: a client's
(lineage: read from its file sink's file; relay: pushed to the push input with their
header), and every lane but the first's copy of the agent's own numbers (the source id
with `@<lane>`, since each lane ships the same lines to its own backend). What this hop
lost of carried numbers is saved with the positions (`Positions.ledger_state`, the same
atomic write), so a restart forgets none of it."""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from sluiceway.agent._positions import Positions
from sluiceway.model import LedgerGroup, RangeSet, decode_ledger, split_ledger_order
from sluiceway.ship import MAX_LOST_RUNS, Part, Push, lost_tail

log = logging.getLogger("sluiceway.agent")
LANE_SEP = "@"
MAX_CARRIED = 1000  # carried (source, epoch) kept, per lane; the oldest go first


def input_source(agent_id: str, kind: str, what: str) -> str:
    """An input's source id: stable across restarts for the same agent and config."""
    digest = hashlib.blake2b(what.encode(), digest_size=4).hexdigest()
    return f"{agent_id}/{kind}:{digest}"


@dataclass
class LineNumbers:
    """An input without files: numbers per run (one epoch per process)."""

    source: str
    epoch: str = field(default_factory=lambda: secrets.token_hex(6))
    next: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    lost_set: RangeSet = field(default_factory=RangeSet)
    lost_unknown: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, n: int) -> list[int]:
        with self.lock:
            first, self.next = self.next, self.next + n
        return list(range(first, first + n))

    def take_one(self) -> int:
        with self.lock:
            n = self.next
            self.next = n + 1
        return n


@dataclass
class Carried:
    """Numbers of a source this agent carries, and what this hop lost of them."""

    received_up_to: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    lost_set: RangeSet = field(default_factory=RangeSet)
    lost_unknown: int = 0

    def lose(self, runs: list[tuple[int, int]], reason: str) -> None:
        for a, b in runs:
            self.lost[reason] = self.lost.get(reason, 0) + self.lost_set.add(a, b)
        if self.lost_set.runs > MAX_LOST_RUNS:
            self.lost_unknown += len(self.lost_set)
            self.lost_set = RangeSet()

    def dump(self) -> list[Any]:
        return [self.received_up_to, self.lost, self.lost_set.ranges(), self.lost_unknown]

    @staticmethod
    def load(x: list[Any]) -> Carried:
        return Carried(int(x[0]), {str(k): int(v) for k, v in dict(x[1]).items()},
                       RangeSet((int(a), int(b)) for a, b in x[2]), int(x[3]))


def lane_source(source: str, lane: str) -> str:
    """A lane's copy of one of the agent's sources."""
    return f"{source}{LANE_SEP}{lane}"


class LaneLedger:
    """What one lane's queue and delivery tell the ledger (`AgentQueue.ledger`)."""

    def __init__(self, ledger: AgentLedger, lane: str | None) -> None:
        self.ledger, self.lane = ledger, lane

    def lose_pushes(self, pushes: list[Push], reason: str) -> None:
        for p in pushes:
            if p.ledger:
                self.ledger.lose(decode_ledger(p.ledger), reason, self.lane)

    def lose_part(self, part: Part, gone: dict[str, int]) -> None:
        push = part.payload
        if not isinstance(push, Push) or not push.ledger:
            return
        groups = decode_ledger(push.ledger)
        # the last lines in ledger order, given to the reasons in turn
        rest = lost_tail(groups, sum(gone.values()))
        for reason, n in gone.items():
            mine, rest = split_ledger_order(rest, n)
            self.ledger.lose(mine, reason, self.lane)


class AgentLedger:
    def __init__(self, positions: Positions, agent_id: str = "") -> None:
        self.positions = positions
        self.own_prefix = f"{agent_id}/" if agent_id else ""
        self.inputs: dict[str, LineNumbers] = {}  # epoch -> numbers of a line input
        # lane (None: the first) -> carried (source, epoch) -> figures
        self.carried: dict[str | None, dict[tuple[str, str], Carried]] = {None: {}}
        self._lock = threading.Lock()
        self._load(positions.saved_ledger)
        positions.ledger_state = self.state
        self.first = LaneLedger(self, None)

    # -- saved with the positions ----------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"carried": [[lane, src, ep, c.dump()]
                                for lane, book in self.carried.items()
                                for (src, ep), c in book.items()]}

    def _load(self, saved: Any) -> None:
        try:
            for lane, src, ep, x in (saved or {}).get("carried", []):
                self.carried.setdefault(lane, {})[(str(src), str(ep))] = Carried.load(x)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            log.warning("the ledger's saved figures are unreadable (%s); starting without "
                        "them", exc)

    def _book(self, lane: str | None, key: tuple[str, str], make: bool) -> Carried | None:
        """The caller holds the lock."""
        book = self.carried.setdefault(lane, {})
        c = book.get(key)
        if c is None and make:
            c = book[key] = Carried()
            if len(book) > MAX_CARRIED:
                del book[next(iter(book))]
        return c

    def lane(self, tag: str | None) -> LaneLedger:
        return self.first if tag is None else LaneLedger(self, tag)

    def is_own(self, source: str) -> bool:
        return bool(self.own_prefix) and source.startswith(self.own_prefix)

    def received(self, groups: list[LedgerGroup]) -> None:
        """Lines that carry a client's numbers were read (lineage) or pushed (relay)."""
        with self._lock:
            for g in groups:
                c = self._book(None, (g.source, g.epoch), True)
                assert c is not None
                top = max(b for _, b in g.runs)
                if top > c.received_up_to:
                    c.received_up_to = top
                    self.positions.touch()

    def line_input(self, source: str) -> LineNumbers:
        nums = LineNumbers(source)
        self.inputs[nums.epoch] = nums
        return nums

    def lose(self, groups: list[LedgerGroup], reason: str, lane: str | None = None) -> None:
        """Numbers lost at this hop, on `lane` (None: the first lane)."""
        for g in groups:
            if lane is not None:  # a lane's copy: `<own source>@<lane>`
                own, sep, tag = g.source.rpartition(LANE_SEP)
                if sep and tag == lane:
                    with self._lock:
                        c = self._book(lane, (own, g.epoch), True)
                        assert c is not None
                        c.lose(g.runs, reason)
                    self.positions.touch()
                continue
            if self.positions.lose(g.epoch, reason, g.runs):
                continue
            nums = self.inputs.get(g.epoch)
            if nums is not None and nums.source == g.source:
                with nums.lock:
                    for a, b in g.runs:
                        nums.lost[reason] = nums.lost.get(reason, 0) + nums.lost_set.add(a, b)
                continue
            with self._lock:
                c = self._book(None, (g.source, g.epoch), False)
                if c is not None:
                    c.lose(g.runs, reason)
            self.positions.touch()

    def group(self, in_flight: dict[str, int], lane: str | None = None) -> dict[str, Any]:
        """A lane's heartbeat ledger group: its queue's lines, and every numbered epoch
        (files being read, newest first; then the line inputs; then, on the first lane,
        the clients' numbers carried). Another lane reports the same epochs under its
        own source ids, with its own losses."""
        entries: list[dict[str, Any]] = []
        with self._lock:
            book = dict(self.carried.get(lane, {}))

        def entry(source: str, epoch: str, emitted: int, lost: dict[str, int],
                  lost_set: RangeSet, unknown: int) -> None:
            if lane is not None:
                c = book.get((source, epoch))
                lost, lost_set, unknown = ((dict(c.lost), c.lost_set, c.lost_unknown)
                                           if c is not None else ({}, RangeSet(), 0))
                source = lane_source(source, lane)
            known = not unknown and lost_set.runs <= MAX_LOST_RUNS
            entries.append({"source": source, "epoch": epoch, "emitted": emitted,
                            "lost": lost,
                            "lost_ranges": lost_set.ranges() if known else None})

        files = sorted(self.positions.snapshot().values(), key=lambda f: -f.emitted)
        for f in files:
            if not f.numbered or not f.source or not (f.emitted or f.lost):
                continue  # nothing numbered yet (or every line was a client's: lineage)
            entry(f.source, f.epoch, f.emitted, dict(f.lost), f.lost_set, f.lost_unknown)
        for nums in list(self.inputs.values()):
            with nums.lock:
                emitted, lost = nums.next, dict(nums.lost)
                lost_set, unknown = RangeSet(nums.lost_set), nums.lost_unknown
            entry(nums.source, nums.epoch, emitted, lost, lost_set, unknown)
        if lane is None:
            for (src, ep), c in book.items():
                known = not c.lost_unknown and c.lost_set.runs <= MAX_LOST_RUNS
                entries.append({"source": src, "epoch": ep, "emitted": 0,
                                "lost": dict(c.lost),
                                "lost_ranges": c.lost_set.ranges() if known else None,
                                "received_up_to": c.received_up_to})
        return {"in_flight": in_flight, "entries": entries}

    def reread_backlog(self) -> int:
        """Lines an earlier run numbered that this one has not read again yet: numbers
        below `emitted` that are neither done (before `line`) nor in a range handed
        downstream in this run."""
        return sum(max(0, f.emitted - f.line - sum(p[4] - p[3] for p in f.pending))
                   for f in self.positions.snapshot().values() if f.numbered)
