"""The agent's side of the ledger (ARCHITECTURE.md §ledger): each input is a source;
a file's content is an epoch numbered from its first line read (kept with its position,
`_positions.py`), stdin, syslog and the demo input number their lines per run. This
module notes the numbers the queue and the delivery lose, and builds the heartbeat's
ledger group."""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from sluiceway.agent._positions import Positions
from sluiceway.model import LedgerGroup, RangeSet, decode_ledger, split_ledger_order
from sluiceway.ship import MAX_LOST_RUNS, Part, Push, lost_tail


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


@dataclass
class Inherited:
    """Lineage: a client's numbers read from a file, and what this hop lost of them."""

    received_up_to: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    lost_set: RangeSet = field(default_factory=RangeSet)


class AgentLedger:
    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.inputs: dict[str, LineNumbers] = {}  # epoch -> numbers of a line input
        self.inherited: dict[tuple[str, str], Inherited] = {}
        self._lock = threading.Lock()

    def received(self, groups: list[LedgerGroup]) -> None:
        """Lines that carry a client's numbers were read (lineage)."""
        with self._lock:
            for g in groups:
                inh = self.inherited.setdefault((g.source, g.epoch), Inherited())
                top = max(b for _, b in g.runs)
                if top > inh.received_up_to:
                    inh.received_up_to = top

    def line_input(self, source: str) -> LineNumbers:
        nums = LineNumbers(source)
        self.inputs[nums.epoch] = nums
        return nums

    def lose(self, groups: list[LedgerGroup], reason: str) -> None:
        for g in groups:
            if self.positions.lose(g.epoch, reason, g.runs):
                continue
            nums = self.inputs.get(g.epoch)
            if nums is not None:
                with nums.lock:
                    for a, b in g.runs:
                        nums.lost[reason] = nums.lost.get(reason, 0) + nums.lost_set.add(a, b)
                continue
            with self._lock:
                inh = self.inherited.get((g.source, g.epoch))
                if inh is not None:
                    for a, b in g.runs:
                        inh.lost[reason] = inh.lost.get(reason, 0) + inh.lost_set.add(a, b)

    def lose_pushes(self, pushes: list[Push], reason: str) -> None:
        for p in pushes:
            if p.ledger:
                self.lose(decode_ledger(p.ledger), reason)

    def lose_part(self, part: Part, gone: dict[str, int]) -> None:
        push = part.payload
        if not isinstance(push, Push) or not push.ledger:
            return
        groups = decode_ledger(push.ledger)
        # the last lines in ledger order, given to the reasons in turn
        rest = lost_tail(groups, sum(gone.values()))
        for reason, n in gone.items():
            mine, rest = split_ledger_order(rest, n)
            self.lose(mine, reason)

    def group(self, in_flight: dict[str, int]) -> dict[str, Any]:
        """The heartbeat's ledger group: the queue's lines, and every numbered epoch
        (files being read, newest first; then the line inputs)."""
        entries: list[dict[str, Any]] = []
        files = sorted(self.positions.snapshot().values(), key=lambda f: -f.emitted)
        for f in files:
            if not f.numbered or not f.source or not (f.emitted or f.lost):
                continue  # nothing numbered yet (or every line was a client's: lineage)
            known = not f.lost_unknown and f.lost_set.runs <= MAX_LOST_RUNS
            entries.append({"source": f.source, "epoch": f.epoch, "emitted": f.emitted,
                            "lost": dict(f.lost),
                            "lost_ranges": f.lost_set.ranges() if known else None})
        for nums in self.inputs.values():
            with nums.lock:
                known = not nums.lost_unknown and nums.lost_set.runs <= MAX_LOST_RUNS
                entries.append({"source": nums.source, "epoch": nums.epoch,
                                "emitted": nums.next, "lost": dict(nums.lost),
                                "lost_ranges": nums.lost_set.ranges() if known else None})
        with self._lock:
            for (src, ep), inh in self.inherited.items():
                known = inh.lost_set.runs <= MAX_LOST_RUNS
                entries.append({"source": src, "epoch": ep, "emitted": 0,
                                "lost": dict(inh.lost),
                                "lost_ranges": inh.lost_set.ranges() if known else None,
                                "received_up_to": inh.received_up_to})
        return {"in_flight": in_flight, "entries": entries}

    def reread_backlog(self) -> int:
        """Lines an earlier run numbered that this one has not read again yet: numbers
        below `emitted` that are neither done (before `line`) nor in a range handed
        downstream in this run."""
        return sum(max(0, f.emitted - f.line - sum(p[4] - p[3] for p in f.pending))
                   for f in self.positions.snapshot().values() if f.numbered)
