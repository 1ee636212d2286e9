"""How a push says which numbered lines it carries: the `X-Sluiceway-Ledger` header.

A producer (a client sink, an agent input) has a `source` id, stable across restarts,
and an `epoch` that changes when its numbering starts over; it numbers the lines it
emits 0, 1, 2, ... A push carries, in one header of at most `MAX_HEADER` bytes, the
numbers of its lines as runs per (source, epoch):

    X-Sluiceway-Ledger: 1;<source>;<epoch>;<start>+<count>,<start>+<count>|<source>;...

`source` and `epoch` are percent-encoded (`urllib.parse.quote`, nothing kept safe but
letters, digits and `_.-~`). The push's numbers, in *ledger order*, are the groups in
order and each group's runs in order; the header says nothing about which entry of
the body has which number. When a server keeps only part of a push (a partial 400),
the lines kept are taken to be the first ones in ledger order and the lines refused
the last ones — the shipper counts its loss the same way — so both sides agree on
which numbers were stored and which were lost.

A real Loki ignores the header (no per-line structured metadata is ever sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from sluiceway.model._ranges import RangeSet

LEDGER_HEADER = "X-Sluiceway-Ledger"
LEDGER_VERSION = "1"
MAX_HEADER = 1024
MAX_ID = 256  # characters of a source id or an epoch


class LedgerHeaderError(ValueError):
    """A header that does not read as a ledger header."""


@dataclass(slots=True)
class LedgerGroup:
    """Numbers of one (source, epoch) in a push: runs `(start, end)` in ledger order."""

    source: str
    epoch: str
    runs: list[tuple[int, int]]

    @property
    def lines(self) -> int:
        return sum(b - a for a, b in self.runs)


def _q(s: str) -> str:
    return quote(s, safe="")


def encode_ledger(groups: list[LedgerGroup]) -> str:
    """The header value; its length may pass MAX_HEADER (the caller cuts the push)."""
    parts = []
    for g in groups:
        runs = ",".join(f"{a}+{b - a}" for a, b in g.runs)
        parts.append(f"{_q(g.source)};{_q(g.epoch)};{runs}")
    return f"{LEDGER_VERSION};" + "|".join(parts)


def header_size(groups: list[LedgerGroup]) -> int:
    return len(encode_ledger(groups))


def decode_ledger(value: str) -> list[LedgerGroup]:
    """The groups of a header value; LedgerHeaderError says what is wrong."""
    if len(value) > MAX_HEADER:
        raise LedgerHeaderError(f"longer than {MAX_HEADER} bytes")
    version, sep, rest = value.partition(";")
    if not sep or version.strip() != LEDGER_VERSION:
        raise LedgerHeaderError(f"version {version.strip()!r} unknown (this server reads "
                                f"{LEDGER_VERSION})")
    groups: list[LedgerGroup] = []
    for text in rest.split("|"):
        fields = text.strip().split(";")
        if len(fields) != 3:
            raise LedgerHeaderError(f"group {text[:60]!r}: want source;epoch;runs")
        source, epoch = unquote(fields[0]), unquote(fields[1])
        if not source or not epoch or len(source) > MAX_ID or len(epoch) > MAX_ID:
            raise LedgerHeaderError(f"group {text[:60]!r}: source and epoch must be 1 to "
                                    f"{MAX_ID} characters")
        runs: list[tuple[int, int]] = []
        for run in fields[2].split(","):
            a, plus, n = run.partition("+")
            if not plus or not a.isdigit() or not n.isdigit() or int(n) < 1:
                raise LedgerHeaderError(f"run {run[:40]!r}: want <start>+<count>")
            runs.append((int(a), int(a) + int(n)))
        groups.append(LedgerGroup(source, epoch, runs))
    return groups


def split_ledger_order(groups: list[LedgerGroup], first: int
                       ) -> tuple[list[LedgerGroup], list[LedgerGroup]]:
    """The first `first` numbers in ledger order, and the rest."""
    head: list[LedgerGroup] = []
    tail: list[LedgerGroup] = []
    left = first
    for g in groups:
        h: list[tuple[int, int]] = []
        t: list[tuple[int, int]] = []
        for a, b in g.runs:
            if left >= b - a:
                h.append((a, b))
                left -= b - a
            elif left > 0:
                h.append((a, a + left))
                t.append((a + left, b))
                left = 0
            else:
                t.append((a, b))
        if h:
            head.append(LedgerGroup(g.source, g.epoch, h))
        if t:
            tail.append(LedgerGroup(g.source, g.epoch, t))
    return head, tail


def group_sets(groups: list[LedgerGroup]) -> dict[tuple[str, str], RangeSet]:
    out: dict[tuple[str, str], RangeSet] = {}
    for g in groups:
        rs = out.setdefault((g.source, g.epoch), RangeSet())
        for a, b in g.runs:
            rs.add(a, b)
    return out
