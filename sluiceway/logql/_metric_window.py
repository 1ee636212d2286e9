"""Window functions of unwrapped range aggregations, written as Loki computes them.

Float results must match Loki digit for digit, so these keep Loki's arithmetic order
(sequential sums, incremental means, Welford variance) instead of numpy reductions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# (values in the window, their ts (ns), window end (ns), range (ns)) -> value
WindowFn = Callable[[list[float], list[int], int, int], float]


def _sum(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    total = 0.0
    for v in vs:
        total += v
    return total


def _avg(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    mean, count = 0.0, 0.0
    for v in vs:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean += v / count - mean / count
    return mean


def _max(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    best = vs[0]
    for v in vs:
        if v > best or math.isnan(best):
            best = v
    return best


def _min(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    best = vs[0]
    for v in vs:
        if v < best or math.isnan(best):
            best = v
    return best


def _stdvar(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    aux, count, mean = 0.0, 0.0, 0.0
    for v in vs:
        count += 1
        delta = v - mean
        mean += delta / count
        aux += delta * (v - mean)
    return aux / count


def _stddev(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    return math.sqrt(_stdvar(vs, ts, end, rng))


def _first(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    return vs[0]


def _last(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    return vs[-1]


def _rate(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    return _sum(vs, ts, end, rng) / (rng / 1e9)


def _rate_counter(vs: list[float], ts: list[int], end: int, rng: int) -> float:
    """Prometheus' extrapolated counter rate over the window (end - rng, end]."""
    if len(vs) < 2:
        return 0.0
    result = vs[-1] - vs[0]
    last = 0.0
    for v in vs:
        if v < last:  # a counter reset: the value before it was lost from the difference
            result += last
        last = v
    to_start = (ts[0] - (end - rng)) / 1e9
    to_end = (end - ts[-1]) / 1e9
    sampled = (ts[-1] - ts[0]) / 1e9
    avg_gap = sampled / (len(vs) - 1)
    if result > 0 and vs[0] >= 0:
        to_zero = sampled * (vs[0] / result)
        to_start = min(to_start, to_zero)
    threshold = avg_gap * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else avg_gap / 2
    interval += to_end if to_end < threshold else avg_gap / 2
    if sampled == 0:  # Go divides by zero into ±Inf/NaN; Python would raise
        ratio = math.inf if interval > 0 else math.nan
        return result * ratio / (rng / 1e9)
    return result * (interval / sampled) / (rng / 1e9)


def quantile(q: float, values: list[float]) -> float:
    """Prometheus' quantile: linear interpolation between the closest ranks."""
    if not values:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    vs = sorted(values)
    rank = q * (len(vs) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(vs) - 1, lower + 1)
    weight = rank - math.floor(rank)
    return vs[lower] * (1 - weight) + vs[upper] * weight


def quantile_fn(q: float) -> WindowFn:
    return lambda vs, ts, end, rng: quantile(q, vs)


WINDOW_FNS: dict[str, WindowFn] = {
    "sum_over_time": _sum, "avg_over_time": _avg, "max_over_time": _max,
    "min_over_time": _min, "stdvar_over_time": _stdvar, "stddev_over_time": _stddev,
    "first_over_time": _first, "last_over_time": _last, "rate": _rate,
    "rate_counter": _rate_counter,
}
