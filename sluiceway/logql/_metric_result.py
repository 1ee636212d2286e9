"""Typed results of metric queries from the engine's values: a matrix (range queries), a
vector or a scalar (instant queries). Loki's JSON is written from these at the HTTP edge
(`QueryResult.to_loki_json`)."""

from __future__ import annotations

import math

from sluiceway.logql._metric_types import Grid, Scalar, Vec
from sluiceway.logql._result import (
    MatrixResult,
    MatrixSeries,
    ScalarResult,
    VectorResult,
)


def matrix_of(vec: Vec, grid: Grid) -> MatrixResult:
    """Each series with a point present, sorted by labels, with its present points."""
    times = grid.points.tolist()
    out = []
    for s in sorted(vec.series, key=lambda s: s.labels):
        idx = s.present.nonzero()[0].tolist()
        if not idx:
            continue
        vals = s.values.tolist()
        out.append(MatrixSeries(dict(s.labels), [times[i] for i in idx],
                                [vals[i] for i in idx]))
    return MatrixResult(out)


def vector_of(vec: Vec, grid: Grid, order: str = "") -> VectorResult:
    """One point per series; `order` is "", "asc" or "desc" (sort / sort_desc)."""
    rows = [(s.labels, float(s.values[0])) for s in vec.series if bool(s.present[0])]
    rows.sort(key=lambda r: r[0])
    if order:
        # NaN sorts last either way, as Prometheus' sort functions do.
        rows.sort(key=lambda r: (math.isnan(r[1]),
                                 (r[1] if order == "asc" else -r[1]) if not math.isnan(r[1])
                                 else 0.0))
    return VectorResult(int(grid.points[0]), [(dict(k), v) for k, v in rows])


def scalar_of(sc: Scalar, grid: Grid) -> ScalarResult:
    return ScalarResult(int(grid.points[0]), float(sc.values[0]))


def scalar_matrix_of(sc: Scalar, grid: Grid) -> MatrixResult:
    """A scalar in a range query: one series without labels."""
    return MatrixResult([MatrixSeries({}, grid.points.tolist(), sc.values.tolist())])
