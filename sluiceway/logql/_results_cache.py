"""A byte-bounded LRU of the partial results of closed time splits.

A metric query's range aggregation is cut into time splits (`_exec.split_range`); the
result of a split that ended before `now - max_cache_freshness_per_query` is kept here,
keyed by the query's shape, the split's bounds and the store's generation (which
compaction and retention bump), so a dashboard refresh recomputes only the newest split
and the partial ones at the edges. Values are per-series bucket counts (`Buckets`),
independent of the query's step grid as long as its window edges fall on the buckets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from sluiceway.logql._metric_types import F64, I64, LabelKey


@dataclass(slots=True)
class Buckets:
    """One series' lines in buckets of `g` ns: bucket id k holds ts in ((k-1)g, kg]."""

    ids: I64
    counts: F64
    sizes: F64 | None

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.counts.nbytes
                   + (self.sizes.nbytes if self.sizes is not None else 0))


SplitResult = dict[LabelKey, Buckets]


def _size(v: SplitResult) -> int:
    return sum(b.nbytes + 64 + sum(len(k) + len(x) for k, x in key) for key, b in v.items())


class ResultsCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[SplitResult, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.stored = 0

    def get(self, key: Hashable) -> SplitResult | None:
        with self._lock:
            got = self._items.get(key)
            if got is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return got[0]

    def put(self, key: Hashable, value: SplitResult) -> None:
        size = _size(value)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            self.stored += 1
            while self._bytes > self.max_bytes:
                _, (_, n) = self._items.popitem(last=False)
                self._bytes -= n

    @property
    def nbytes(self) -> int:
        return self._bytes
