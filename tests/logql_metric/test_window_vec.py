"""Differential tests: the array window functions (`over_windows`) against the reference
functions of `_metric_window` (one Python loop per window), on random samples and window
grids. The floats must be the same bits: the arrays keep Loki's arithmetic order."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.logql._metric_window import WINDOW_FNS, quantile_fn
from sluiceway.logql._metric_window_vec import over_windows

OPS = sorted(WINDOW_FNS) + ["quantile_over_time"]

_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.5, 1e300, -1e300, math.inf, -math.inf, math.nan, 3.0]),
    st.integers(0, 5000).map(float),
)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x) if not math.isnan(x) else b"nan"


def reference(op: str, q: float | None, ts: list[int], vs: list[float], a: list[int],
              b: list[int], ends: list[int], rng: int) -> list[float]:
    fn = quantile_fn(q or 0.0) if op == "quantile_over_time" else WINDOW_FNS[op]
    return [fn(vs[s:t], ts[s:t], e, rng) if t > s else 0.0
            for s, t, e in zip(a, b, ends, strict=True)]


@st.composite
def series(draw: st.DrawFn) -> tuple[list[int], list[float], list[int], int]:
    n = draw(st.integers(0, 80))
    gaps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    ts = np.cumsum(gaps).tolist()
    vs = draw(st.lists(_values, min_size=n, max_size=n))
    step = draw(st.integers(1, 6))
    rng = draw(st.integers(1, 40))
    # many windows (the row-by-row path) or few (the per-window loops)
    count = draw(st.sampled_from([1, 3, 40, 90]))
    ends = [k * step for k in range(count)]
    return ts, vs, ends, rng


@settings(max_examples=120, deadline=None)
@given(data=series(), op=st.sampled_from(OPS),
       q=st.sampled_from([0.0, 0.25, 0.5, 0.99, 1.0, -0.5, 1.5]))
def test_over_windows_is_the_reference_bit_for_bit(
        data: tuple[list[int], list[float], list[int], int], op: str, q: float) -> None:
    ts, vs, ends, rng = data
    t = np.asarray(ts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    a = np.searchsorted(t, e - rng, "right")
    b = np.searchsorted(t, e, "right")
    got = over_windows(op, q, t, np.asarray(vs, dtype=np.float64), a, b, e, rng)
    want = reference(op, q, ts, vs, a.tolist(), b.tolist(), ends, rng)
    assert [_bits(x) for x in got.tolist()] == [_bits(x) for x in want], (op, q)


def test_long_windows_next_to_many_short_ones() -> None:
    """One window far longer than the others (it finishes alone, row after row) and
    values whose sums depend on their order."""
    rng = np.random.default_rng(5)
    vs = (rng.standard_normal(5000) * 1e8 + rng.random(5000)).tolist()
    ts = list(range(5000))
    ends = [4999] + [10 * k for k in range(60)]
    wide = [4999 + 1] + [3] * 60  # the first window covers every sample
    t, e = np.asarray(ts), np.asarray(ends)
    a = np.searchsorted(t, e - np.asarray(wide), "right")
    b = np.searchsorted(t, e, "right")
    for op in ("sum_over_time", "avg_over_time", "stdvar_over_time", "stddev_over_time"):
        got = []
        for i in range(len(ends)):  # each window alone, as the reference sees it
            fn = WINDOW_FNS[op]
            got.append(fn(vs[a[i]:b[i]], ts[a[i]:b[i]], ends[i], int(wide[i])))
        arr = over_windows(op, None, t, np.asarray(vs), a, b, e, 1)
        if op == "rate":
            continue
        assert arr.tolist() == got, op
