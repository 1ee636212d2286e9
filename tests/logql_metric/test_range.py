"""Range queries: the step grid (aligned to the epoch), default step, matrix shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sluiceway.logql import MemorySource, QueryParams
from sluiceway.logql._metric import default_step_ns, step_grid
from tests.logql_metric.helpers import S, make_source, run
from tests.logql_metric.test_cases import METADATA, STREAMS, A, B, C


@pytest.fixture(scope="module")
def src() -> MemorySource:
    return make_source(STREAMS, METADATA)


def _matrix(data: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    assert data["resultType"] == "matrix"
    out = {}
    for s in data["result"]:
        labels = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(s["metric"].items())) + "}"
        out[labels] = [(t, float(v)) for t, v in s["values"]]
    return out


# (query, start, end, step, expected) — times in seconds
RANGE: list[tuple[str, float, float, float, dict[str, list[tuple[float, float]]]]] = [
    ('count_over_time({app="a"}[10s])', 0, 60, 10,
     {A: [(10, 1), (20, 1), (30, 1), (40, 1), (50, 1)]}),
    # start 3 → first point 10, end 47 → last point 50 (both rounded up to the step)
    ('count_over_time({app="a"}[10s])', 3, 47, 10,
     {A: [(10, 1), (20, 1), (30, 1), (40, 1), (50, 1)]}),
    ('rate({app="a"}[20s])', 10, 50, 10,
     {A: [(10, 0.05), (20, 0.1), (30, 0.1), (40, 0.1), (50, 0.1)]}),
    ('sum by (env) (count_over_time({env=~".+"}[10s]))', 0, 50, 10,
     {'{env="prod"}': [(10, 1), (20, 2), (30, 1), (40, 1), (50, 2)],
      '{env="dev"}': [(10, 1)]}),
    ('bottomk(1, count_over_time({env="prod"}[1m]))', 30, 60, 30,
     {B: [(30, 1), (60, 2)]}),
    ('topk(1, count_over_time({env="prod"}[1m]))', 30, 60, 30,
     {A: [(30, 3), (60, 5)]}),
    ('absent_over_time({app="c"}[10s])', 0, 30, 10,
     {'{app="c"}': [(0, 1), (20, 1), (30, 1)]}),
    ('count_over_time({app="a"}[10s] offset 10s)', 20, 40, 10,
     {A: [(20, 1), (30, 1), (40, 1)]}),
    ('max_over_time({app="a"} | logfmt latency | unwrap latency [20s])', 20, 60, 20,
     {A: [(20, 300), (40, 400), (60, 50)]}),
    ('sum_over_time({app="a"} | logfmt latency | unwrap latency [20s])', 20, 60, 20,
     {A: [(20, 400), (40, 600), (60, 50)]}),
    ('count_over_time({app="a"}[1m]) > 2', 20, 60, 20, {A: [(40, 4), (60, 5)]}),
    # `and` binds looser than `>`; vector() has no labels, so only on() can match it
    ('count_over_time({app="a"}[1m]) and vector(1) > 0', 20, 20, 20, {}),
    ('count_over_time({app="a"}[1m]) and on() vector(1) > 0', 20, 20, 20, {A: [(20, 2)]}),
    ("vector(3)", 0, 20, 10, {"{}": [(0, 3), (10, 3), (20, 3)]}),
    ("1 + 1", 0, 20, 10, {"{}": [(0, 2), (10, 2), (20, 2)]}),
    ('sum(count_over_time({app="a"}[1m])) + sum(count_over_time({app="b"}[1m]))',
     30, 60, 30, {"{}": [(30, 4), (60, 7)]}),
    ('count_over_time({app="a"}[1m]) or count_over_time({app="b"}[1m])', 0, 20, 20,
     {A: [(20, 2)], B: [(20, 1)]}),
    ('count_over_time({app="c"}[1m])', 0, 120, 60, {C: [(60, 1)]}),
    ('sort_desc(count_over_time({env="prod"}[1m]))', 60, 60, 60, {A: [(60, 5)],
                                                                  B: [(60, 2)]}),
]


@pytest.mark.parametrize(("query", "start", "end", "step", "want"), RANGE,
                         ids=[f"{q}@{a}-{b}/{c}" for q, a, b, c, _ in RANGE])
def test_range(src: MemorySource, query: str, start: float, end: float, step: float,
               want: dict[str, list[tuple[float, float]]]) -> None:
    got = _matrix(run(src, query, start, end, step))
    assert got.keys() == want.keys()
    for k, pts in want.items():
        assert [t for t, _ in got[k]] == [t for t, _ in pts], k
        assert np.allclose([v for _, v in got[k]], [v for _, v in pts], rtol=1e-12), k


def test_matrix_sorted_by_labels(src: MemorySource) -> None:
    data = run(src, 'count_over_time({env=~".+"}[1m])', 60, 60, 60)
    assert [s["metric"]["app"] for s in data["result"]] == ["a", "b", "c"]


def test_default_step_is_range_over_250_seconds() -> None:
    assert default_step_ns(0, 1000 * S) == 4 * S
    assert default_step_ns(0, 3600 * S) == 14 * S  # 14.4 → 14
    assert default_step_ns(0, 100 * S) == 1 * S  # never below one second
    grid = step_grid(QueryParams(["t"], 0, 1000 * S))
    assert len(grid) == 251 and grid.points[1] == 4 * S


def test_default_step_used(src: MemorySource) -> None:
    data = run(src, "vector(1)", 0, 1000)
    values = data["result"][0]["values"]
    assert len(values) == 251
    assert values[:2] == [[0, "1"], [4, "1"]]


def test_step_alignment_matches_reference() -> None:
    # REFERENCE §9: start 100, end 1000, step 300 → 300, 600, 900, 1200 in Loki's answer.
    # Loki's frontend moves start down (to 0) and end up; the point at 0 had no data there,
    # and an empty point is left out of an answer (issue 15: start 2300, step 15 → 2295).
    grid = step_grid(QueryParams(["t"], 100 * S, 1000 * S, step_ns=300 * S))
    assert (grid.points // S).tolist() == [0, 300, 600, 900, 1200]


def test_sub_second_times_are_fractional() -> None:
    src = make_source({A: [(0.25, "x"), (0.75, "y")]})
    data = run(src, 'count_over_time({app="a"}[500ms])', 0.5, 1, 0.5)
    assert data["result"][0]["values"] == [[0.5, "1"], [1, "1"]]
