"""Filter scan speed, printed (run with -s to see it), not asserted: machines differ."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from sluiceway.logql import QueryParams, SeriesRef, evaluate
from sluiceway.model import EntryBlock, Matcher

WORDS = [b"alpha", b"beta", b"gamma", b"delta", b"error", b"info", b"user=42", b"request",
         b"GET", b"/api/v1/items", b"took=12ms", b"status=200"]


class _Blocks:
    """One series of pre-built ~1 MB blocks, like decompressed chunks from the store."""

    def __init__(self, n_blocks: int, lines_per_block: int) -> None:
        rnd = random.Random(7)
        self._blocks: list[EntryBlock] = []
        t = 0
        for b in range(n_blocks):
            lines = [b" ".join(rnd.choice(WORDS) for _ in range(12)) + b" id=%d" % i
                     for i in range(lines_per_block)]
            lines[(b * 131) % lines_per_block] += b" needle-7f3a"
            ts = np.arange(t, t + lines_per_block, dtype=np.int64)
            self._blocks.append(EntryBlock.from_lines({"app": "bench"}, ts, lines))
            t += lines_per_block
        self.end = t
        self.nbytes = sum(b.nbytes for b in self._blocks)

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        return [SeriesRef("t", 1, {"app": "bench"})]

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str,
               **_: Any) -> Iterator[EntryBlock]:
        return iter(self._blocks if direction == "forward" else self._blocks[::-1])


def test_filter_scan_speed(capsys: Any) -> None:
    src = _Blocks(24, 12_000)
    rows = []
    for q in ('{app="bench"} |= "needle-7f3a"', '{app="bench"} != "error" |= "needle"',
              '{app="bench"} |~ "needle-[0-9a-f]+"', '{app="bench"} |~ "(?i)NEEDLE-7F3A"'):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            res = evaluate(src, q, QueryParams(["t"], 0, src.end, limit=1000))
            best = min(best, time.perf_counter() - t0)
        assert res.stats.bytes_processed == src.nbytes
        rows.append(f"{q:45s} {src.nbytes / best / 1e6:8.0f} MB/s "
                    f"({src.nbytes / 1e6:.0f} MB, {res.stats.entries_returned} hits)")
    with capsys.disabled():
        print("\nlogql filter scan (best of 3):\n  " + "\n  ".join(rows))
