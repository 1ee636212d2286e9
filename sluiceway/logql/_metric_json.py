"""Loki's JSON shapes for metric results: numbers as Go prints them, times in seconds."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from sluiceway.logql._metric_types import Grid, LabelKey, Scalar, Vec


def go_float(v: float) -> str:
    """`strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def json_time(ns: int) -> int | float:
    """Seconds with millisecond resolution, an integer when whole (as Loki writes it)."""
    ms = ns // 1_000_000
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _sort_key(labels: LabelKey) -> LabelKey:
    return labels


def matrix_json(vec: Vec, grid: Grid) -> list[dict[str, Any]]:
    times = [json_time(int(p)) for p in grid.points.tolist()]
    out = []
    for s in sorted(vec.series, key=lambda s: _sort_key(s.labels)):
        idx = s.present.nonzero()[0].tolist()
        if not idx:
            continue
        vals = s.values.tolist()
        out.append({"metric": dict(s.labels),
                    "values": [[times[i], go_float(vals[i])] for i in idx]})
    return out


def vector_json(vec: Vec, grid: Grid, order: str = "") -> list[dict[str, Any]]:
    """One point per series; `order` is "", "asc" or "desc" (sort / sort_desc)."""
    t = json_time(int(grid.points[0]))
    rows = [(s.labels, float(s.values[0])) for s in vec.series if bool(s.present[0])]
    rows.sort(key=lambda r: _sort_key(r[0]))
    if order:
        # NaN sorts last either way, as Prometheus' sort functions do.
        rows.sort(key=lambda r: (math.isnan(r[1]),
                                 (r[1] if order == "asc" else -r[1]) if not math.isnan(r[1])
                                 else 0.0))
    return [{"metric": dict(k), "value": [t, go_float(v)]} for k, v in rows]


def scalar_json(sc: Scalar, grid: Grid) -> list[Any]:
    # Loki writes an instant scalar's time in milliseconds (see query_instant_scalar).
    return [int(grid.points[0]) // 1_000_000, go_float(float(sc.values[0]))]


def scalar_matrix_json(sc: Scalar, grid: Grid) -> list[dict[str, Any]]:
    """A scalar in a range query: one series without labels."""
    times = [json_time(int(p)) for p in grid.points.tolist()]
    return [{"metric": {}, "values": [[t, go_float(v)] for t, v in
                                      zip(times, sc.values.tolist(), strict=True)]}]
