"""Values of the metric engine: every expression is evaluated over the whole step grid.

A `Vec` is a set of series, each holding one value per grid point plus a presence mask
(absent points are distinct from NaN values, which Loki prints as "NaN"); a `Scalar`
has a value at every point. Evaluating all steps at once keeps the work in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sluiceway.logql._errors import QueryError

LabelKey = tuple[tuple[str, str], ...]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Grid:
    """Evaluation times (Unix ns); `instant` means one point and a vector/scalar result."""

    points: I64
    instant: bool

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass(slots=True)
class Series:
    labels: LabelKey
    values: F64
    present: Mask


@dataclass(slots=True)
class Vec:
    series: list[Series] = field(default_factory=list)


@dataclass(slots=True)
class Scalar:
    values: F64


Value = Vec | Scalar


def key_of(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def check_unique(vec: Vec, what: str) -> None:
    """Two series with one label set at one time would be ambiguous (Prometheus rule)."""
    seen: dict[LabelKey, Mask] = {}
    for s in vec.series:
        prev = seen.get(s.labels)
        if prev is not None and bool((prev & s.present).any()):
            raise QueryError(f"vector cannot contain metrics with the same labelset ({what})")
        seen[s.labels] = s.present if prev is None else prev | s.present
