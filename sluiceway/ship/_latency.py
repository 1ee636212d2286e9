"""Push latency by status code: a small histogram the Prometheus collector exports."""

from __future__ import annotations

import bisect
import threading

# Seconds; Prometheus's default buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Cumulative counts per status label (`204`, `429`, `none` for no answer, …)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, status: str, seconds: float) -> None:
        i = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            counts = self._counts.get(status)
            if counts is None:
                counts = self._counts[status] = [0] * (len(BUCKETS) + 1)
                self._sums[status] = 0.0
            counts[i] += 1
            self._sums[status] += seconds

    def snapshot(self) -> dict[str, tuple[list[tuple[str, int]], float]]:
        """status -> ([(upper bound, cumulative count), …, ("+Inf", total)], sum)."""
        with self._lock:
            items = [(s, list(c), self._sums[s]) for s, c in self._counts.items()]
        out: dict[str, tuple[list[tuple[str, int]], float]] = {}
        for status, counts, total in items:
            acc, rows = 0, []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
                acc += n
                rows.append((bound, acc))
            out[status] = (rows, total)
        return out
