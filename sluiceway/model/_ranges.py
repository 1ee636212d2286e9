"""Sets of sequence numbers as sorted, disjoint, half-open ranges `[start, end)`.

The ledger's one set type: producers keep the numbers they counted lost in one, the
server the numbers it stored. Adding returns how many numbers were new, so a line sent
twice (a retry, a re-read after a restart) counts once.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    """Not thread-safe: the owner locks."""

    __slots__ = ("_starts", "_ends", "_count")

    def __init__(self, ranges: Iterable[tuple[int, int]] | None = None) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for a, b in ranges or ():
            self.add(a, b)

    def __len__(self) -> int:
        """How many numbers the set holds."""
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and list(self) == list(other)

    def __hash__(self) -> int:  # mutable: identity only
        return id(self)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @property
    def runs(self) -> int:
        return len(self._starts)

    def ranges(self) -> list[list[int]]:
        return [[a, b] for a, b in self]

    def add(self, start: int, end: int) -> int:
        """Add `[start, end)`; returns how many of its numbers were not in the set."""
        if end <= start:
            return 0
        starts, ends = self._starts, self._ends
        if not starts or start > ends[-1]:  # the common case: appending in order
            starts.append(start)
            ends.append(end)
            self._count += end - start
            return end - start
        if start == ends[-1]:
            ends[-1] = end
            self._count += end - start
            return end - start
        # first range that ends at or after start, last that starts at or before end
        i = bisect.bisect_left(ends, start)
        j = bisect.bisect_right(starts, end)
        if i == j:  # touches nothing
            starts.insert(i, start)
            ends.insert(i, end)
            self._count += end - start
            return end - start
        covered = sum(min(ends[k], end) - max(starts[k], start) for k in range(i, j)
                      if min(ends[k], end) > max(starts[k], start))
        new_start, new_end = min(start, starts[i]), max(end, ends[j - 1])
        before = sum(ends[k] - starts[k] for k in range(i, j))
        starts[i:j] = [new_start]
        ends[i:j] = [new_end]
        self._count += (new_end - new_start) - before
        return (end - start) - covered

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of `[start, end)` the set does not hold."""
        out: list[tuple[int, int]] = []
        pos = start
        k = bisect.bisect_right(self._ends, start)
        while k < len(self._starts) and self._starts[k] < end:
            if self._starts[k] > pos:
                out.append((pos, self._starts[k]))
            pos = max(pos, self._ends[k])
            k += 1
        if pos < end:
            out.append((pos, end))
        return out

    def add_set(self, other: RangeSet) -> int:
        return sum(self.add(a, b) for a, b in other)

    def count_below(self, limit: int) -> int:
        """How many numbers of the set are below `limit`."""
        n = 0
        for a, b in self:
            if a >= limit:
                break
            n += min(b, limit) - a
        return n

    def below(self, limit: int) -> RangeSet:
        out = RangeSet()
        for a, b in self:
            if a >= limit:
                break
            out._starts.append(a)
            out._ends.append(min(b, limit))
            out._count += min(b, limit) - a
        return out

    def contains(self, n: int) -> bool:
        i = bisect.bisect_right(self._starts, n) - 1
        return i >= 0 and n < self._ends[i]

    def missing(self, limit: int) -> RangeSet:
        """The numbers in `[0, limit)` the set does not hold."""
        out = RangeSet()
        pos = 0
        for a, b in self:
            if a >= limit:
                break
            if a > pos:
                out.add(pos, a)
            pos = max(pos, b)
        if pos < limit:
            out.add(pos, limit)
        return out


def runs_of(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Numbers in the order given as runs `[start, end)` of consecutive ones."""
    out: list[tuple[int, int]] = []
    start = end = -1
    for n in numbers:
        if n == end:
            end += 1
            continue
        if end >= 0:
            out.append((start, end))
        start, end = n, n + 1
    if end >= 0:
        out.append((start, end))
    return out
