"""The producer's side of the ledger, for client sinks and agent inputs alike: which
numbers of each (source, epoch) this process counted lost, and which numbers a part
that lost lines held (the ledger's convention: the last lines in ledger order)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sluiceway.model import MAX_HEADER, LedgerGroup, RangeSet, encode_ledger, runs_of

# Runs of lost numbers a heartbeat carries per entry; past that only the counts.
MAX_LOST_RUNS = 512
# A push's header stays under this (the rest of MAX_HEADER is slack for one more run).
HEADER_BUDGET = MAX_HEADER - 64


@dataclass
class EpochLoss:
    """Numbers of one (source, epoch) this process counted lost (any reason)."""

    numbers: RangeSet = field(default_factory=RangeSet)
    unknown: int = 0  # lines counted lost whose numbers are not known


class LossBook:
    """Lost numbers per (source, epoch); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs: dict[tuple[str, str], EpochLoss] = {}

    def lose(self, source: str, epoch: str, runs: list[tuple[int, int]]) -> None:
        with self._lock:
            e = self._epochs.setdefault((source, epoch), EpochLoss())
            for a, b in runs:
                e.numbers.add(a, b)

    def lose_unknown(self, source: str, epoch: str, n: int) -> None:
        if n > 0:
            with self._lock:
                self._epochs.setdefault((source, epoch), EpochLoss()).unknown += n

    def lose_groups(self, groups: list[LedgerGroup]) -> None:
        for g in groups:
            self.lose(g.source, g.epoch, g.runs)

    def ranges(self, source: str, epoch: str) -> list[tuple[int, int]] | None:
        """The lost numbers as runs, or None when some are not known or too many."""
        with self._lock:
            e = self._epochs.get((source, epoch))
            if e is None:
                return []
            if e.unknown or e.numbers.runs > MAX_LOST_RUNS:
                return None
            return list(e.numbers)

    def epochs(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._epochs)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {f"{s}\n{e}": {"numbers": v.numbers.ranges(), "unknown": v.unknown}
                    for (s, e), v in self._epochs.items()}

    def load(self, state: dict[str, Any]) -> None:
        with self._lock:
            for key, v in state.items():
                s, _, e = key.partition("\n")
                self._epochs[(s, e)] = EpochLoss(
                    RangeSet((int(a), int(b)) for a, b in v.get("numbers", [])),
                    int(v.get("unknown", 0)))


def lost_tail(groups: list[LedgerGroup], n: int) -> list[LedgerGroup]:
    """The last `n` numbers of `groups` in ledger order (the lines a part lost when an
    answer names how many, not which)."""
    total = sum(g.lines for g in groups)
    if n >= total:
        return groups
    out: list[LedgerGroup] = []
    skip = total - n
    for g in groups:
        runs: list[tuple[int, int]] = []
        for a, b in g.runs:
            if skip >= b - a:
                skip -= b - a
                continue
            runs.append((a + skip, b))
            skip = 0
        if runs:
            out.append(LedgerGroup(g.source, g.epoch, runs))
    return out


def groups_of(source: str, numbered: list[tuple[str, int]]) -> list[LedgerGroup]:
    """Ledger groups of one source from `(epoch, number)` pairs in order: a new group
    whenever the epoch changes."""
    out: list[LedgerGroup] = []
    i = 0
    while i < len(numbered):
        ep = numbered[i][0]
        j = i
        while j < len(numbered) and numbered[j][0] == ep:
            j += 1
        out.append(LedgerGroup(source, ep, runs_of(n for _, n in numbered[i:j])))
        i = j
    return out


def header_of(groups: list[LedgerGroup]) -> str | None:
    return encode_ledger(groups) if groups else None
