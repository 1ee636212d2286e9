"""A range query's grid as Loki's query frontend makes it: start moved down to a multiple of
the step, end moved up (issue 15: start 2300 s, step 15 s gives a first point at 2295 s)."""

from __future__ import annotations

import pytest

from sluiceway.logql import MemorySource, QueryParams, evaluate
from sluiceway.model import StreamBatch

S = 10**9


def _points(start_s: int, end_s: int, step_s: int) -> list[float]:
    src = MemorySource()
    ts = [t * S for t in range(0, 3000, 5)]  # a line every 5 s
    src.push("t", [StreamBatch({"app": "x"}, ts, ["l"] * len(ts))])
    q = 'sum(count_over_time({app="x"}[1m]))'
    data = evaluate(src, q, QueryParams(["t"], start_s * S, end_s * S,
                                        step_ns=step_s * S)).to_loki_json()
    [series] = data["result"]
    return [p[0] for p in series["values"]]


@pytest.mark.parametrize(("start", "end", "step", "first", "last"), [
    (2300, 2400, 15, 2295, 2400),   # the example
    (2300, 2401, 15, 2295, 2415),   # end moves up
    (100, 1000, 300, 0, 1200),      # REFERENCE §9's example (its point 0 is empty there)
    (2295, 2400, 15, 2295, 2400),   # already aligned: unchanged
])
def test_start_moves_down_and_end_up_to_the_step(start: int, end: int, step: int,
                                                 first: int, last: int) -> None:
    points = _points(start, end, step)
    assert (points[0], points[-1]) == (first, last)
    assert all(b - a == step for a, b in zip(points, points[1:], strict=False))
