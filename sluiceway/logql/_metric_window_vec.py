"""Window functions of unwrapped range aggregations over arrays, many windows at once.

`over_windows` gives every step's value from a series' sorted samples with the same
arithmetic as `_metric_window` (Loki's order: sequential sums, incremental mean, Welford
variance), so the floats are the same bits, only computed with numpy instead of a Python
loop per sample:

- sums: a cumulative sum per window (sequential, as the reference adds);
- means and variances across windows: row `j` of every window (its `j`-th sample) is
  added in one numpy step, so each window still sees its samples one by one, in order;
  windows longer than the 32nd longest finish in a loop of their own (a vector step
  costs more than a Python one when few windows are left);
- `first`/`last` are indexes, `min`/`max` an `fmin`/`fmax` reduction (the same choice of
  value as the reference, which skips NaN after the first sample), a quantile sorts each
  window with numpy and interpolates as `quantile` does.

A window holding a value that is not finite (where Loki's mean and comparisons have
special cases), a zero `min`/`max` (whose sign the reduction may pick differently) and
`rate_counter` take the reference function, window by window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sluiceway.logql._metric_types import F64, I64
from sluiceway.logql._metric_window import WINDOW_FNS, WindowFn, quantile, quantile_fn

_WIDE = 32  # below this many windows, a Python loop per window is cheaper than rows

# The recurrences of `_metric_window`: (state arrays, values, 1-based count) -> state.
_State = list[Any]  # arrays across windows, or floats of one window
_Step = Callable[[_State, Any, float], None]


def _avg_step(s: _State, v: Any, count: float) -> None:
    s[0] += v / count - s[0] / count


def _var_step(s: _State, v: Any, count: float) -> None:
    delta = v - s[0]
    s[0] += delta / count
    s[1] += delta * (v - s[0])


_RECURRENCES: dict[str, tuple[int, _Step]] = {
    "avg_over_time": (1, _avg_step),
    "stdvar_over_time": (2, _var_step), "stddev_over_time": (2, _var_step),
}


def _finish(op: str, s: _State, count: F64) -> F64:
    out: F64
    if op == "avg_over_time":
        out = s[0]
    else:
        out = s[1] / count
        if op == "stddev_over_time":
            out = np.sqrt(out)
    return out


def _recurrence(op: str, vs: F64, a: I64, n: I64) -> F64:
    """The sequential recurrence of `op` over windows vs[a:a+n], row by row."""
    width, step = _RECURRENCES[op]
    order = np.argsort(-n, kind="stable")  # longest first: the active windows are a prefix
    a_s, n_s = a[order], n[order]
    k = len(n_s)
    state: _State = [np.zeros(k, dtype=np.float64) for _ in range(width)]
    # Rows every one of the first _WIDE windows has, in one vector step each.
    rows = int(n_s[min(_WIDE, k) - 1])
    active = k
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(rows):
            while n_s[active - 1] <= j:
                active -= 1
            view = [s[:active] for s in state]
            step(view, vs[a_s[:active] + j], float(j + 1))
    # The few longer windows go on alone, one Python float at a time, from where they are.
    vl: list[float] | None = None
    for w in range(k):
        if n_s[w] <= rows:
            break
        vl = vs.tolist() if vl is None else vl
        cell: list[Any] = [float(s[w]) for s in state]
        base = int(a_s[w])
        for j in range(rows, int(n_s[w])):
            step(cell, vl[base + j], float(j + 1))
        for s, c in zip(state, cell, strict=True):
            s[w] = c
    out = np.empty(k, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out[order] = _finish(op, state, n_s.astype(np.float64))
    return out


def _quantiles(q: float, vs: F64, a: I64, b: I64) -> F64:
    if q < 0 or q > 1:
        return np.full(len(a), quantile(q, [0.0]))
    out = np.empty(len(a), dtype=np.float64)
    for i, (s, t) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        srt = np.sort(vs[s:t])
        rank = q * (t - s - 1)
        lower = max(0, math.floor(rank))
        upper = min(t - s - 1, lower + 1)
        weight = rank - math.floor(rank)
        out[i] = float(srt[lower]) * (1 - weight) + float(srt[upper]) * weight
    return out


def _sums(vs: F64, a: I64, b: I64) -> F64:
    """Sequential sums: a cumulative sum adds one value after the other (numpy's `sum`
    adds pairwise); `+ 0.0` turns the -0.0 of a window of negative zeros into the
    reference's 0.0 (which starts from 0.0)."""
    out = np.empty(len(a), dtype=np.float64)
    for i, (s, t) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        out[i] = float(np.cumsum(vs[s:t])[-1]) + 0.0
    return out


def _bounds(a: I64, b: I64) -> I64:
    ind = np.empty(2 * len(a), dtype=np.int64)
    ind[0::2], ind[1::2] = a, b
    return ind


def over_windows(op: str, param: float | None, ts: I64, vs: F64, starts: I64, stops: I64,
                 ends: I64, rng: int) -> F64:
    """The value of range aggregation `op` (`param`: the quantile) over each window
    vs[starts[i]:stops[i]] ending at ends[i] (0 where the window is empty), equal to the
    reference `WINDOW_FNS` / `quantile_fn` window by window."""
    out = np.zeros(len(starts), dtype=np.float64)
    idx = np.flatnonzero(stops > starts)
    if not len(idx):
        return out
    a, b = starts[idx].astype(np.int64), stops[idx].astype(np.int64)
    fn: WindowFn = quantile_fn(param or 0.0) if op == "quantile_over_time" else WINDOW_FNS[op]
    odd = np.concatenate(([0], np.cumsum(~np.isfinite(vs), dtype=np.int64)))
    slow = (odd[b] - odd[a]) > 0  # windows holding inf or NaN: the reference
    if op == "rate_counter":
        slow[:] = True
    fast = np.flatnonzero(~slow)
    fa, fb = a[fast], b[fast]
    got: F64 | None = None
    if not len(fast):
        pass
    elif op == "first_over_time":
        got = vs[fa]
    elif op == "last_over_time":
        got = vs[fb - 1]
    elif op in ("max_over_time", "min_over_time"):
        ext = np.append(vs, 0.0)  # reduceat reads one index past each window's end
        red = np.fmax if op == "max_over_time" else np.fmin
        got = red.reduceat(ext, _bounds(fa, fb))[0::2]
        slow[fast[got == 0]] = True  # 0.0 or -0.0: the reference's pick
    elif op == "quantile_over_time":
        got = _quantiles(param or 0.0, vs, fa, fb)
    elif op in ("sum_over_time", "rate"):
        got = _sums(vs, fa, fb)
        if op == "rate":
            got = got / (rng / 1e9)
    else:
        got = _recurrence(op, vs, fa, fb - fa)
    if got is not None:
        out[idx[fast]] = got
    if slow.any():
        vl, tl = vs.tolist(), ts.tolist()
        for i in np.flatnonzero(slow).tolist():
            s, t = int(a[i]), int(b[i])
            out[idx[i]] = fn(vl[s:t], tl[s:t], int(ends[idx[i]]), rng)
    return out
