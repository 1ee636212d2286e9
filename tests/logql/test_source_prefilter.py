"""Every block read hands the source the query's line prefilter and deadline
(`LogSource.blocks`), on every engine path, and a source that filters by it next to the
data gives the same answers as one that hands out every line."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from sluiceway.logql import (
    Deadline,
    ExecOptions,
    LinePrefilter,
    MemorySource,
    QueryParams,
    SeriesRef,
    evaluate,
)
from sluiceway.model import EntryBlock, ReadHints, StreamBatch

S = 10**9
LEVELS = ["info", "warn", "error"]


def _fill(src: MemorySource) -> MemorySource:
    rng = random.Random(5)
    for app in ("api", "db"):
        for pod in ("p1", "p2"):
            b = StreamBatch({"app": app, "pod": pod})
            for i in range(300):
                level = rng.choice(LEVELS)
                extra = " needle" if rng.random() < 0.1 else ""
                b.append(S * (1000 + i) + rng.randint(0, 999),
                         f'{{"level":"{level}","n":{i},"msg":"m{i % 7}{extra}"}}')
            src.push("t", [b])
    return src


class Recording(MemorySource):
    """Remembers the prefilter and deadline of every `blocks` call."""

    def __init__(self) -> None:
        super().__init__(block_size=16)
        self.calls: list[tuple[LinePrefilter | None, Deadline | None]] = []

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        self.calls.append((prefilter, deadline))
        return super().blocks(ref, start, end, direction, prefilter=prefilter,
                              deadline=deadline, hints=hints)


@pytest.mark.parametrize(("query", "columnar", "step"), [
    ('{app="api"} |= "needle" |= "m3" | json', True, None),  # the log engine
    ('sum by (app) (count_over_time({app=~".+"} |= "needle" |= "m3" [1m]))', True, 60),
    ('sum by (level) (count_over_time({app=~".+"} |= "needle" |= "m3" | json [1m]))',
     False, 60),  # the per-line metric engine
    ('sum(sum_over_time({app=~".+"} |= "needle" |= "m3" | json | unwrap n [1m]))', True, 60),
])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_every_engine_hands_the_source_the_prefilter_and_the_deadline(
        query: str, columnar: bool, step: int | None, parallelism: int) -> None:
    src = _fill(Recording())
    deadline = Deadline(600)
    evaluate(src, query, QueryParams(
        ["t"], 1000 * S, 1400 * S, limit=1000, step_ns=step and step * S,
        deadline=deadline, options=ExecOptions(columnar=columnar,
                                               parallelism=parallelism)))
    assert src.calls
    assert set(src.calls) == {(LinePrefilter((b"needle", b"m3")), deadline)}


def test_no_literal_no_prefilter() -> None:
    src = _fill(Recording())
    evaluate(src, '{app="api"} != "needle" |~ "m[0-9]" |= "" | json',
             QueryParams(["t"], 1000 * S, 1400 * S))
    assert src.calls and {p for p, _ in src.calls} == {None}


QUERIES = [
    ('{app=~".+"} |= "needle"', None),
    ('{app=~".+"} |= "needle" |= "error" | json | n > 50', None),
    ('{app="api"} |= "m1" | json | line_format "{{.level}}"', None),
    ('{app=~".+"} |= "needle" != "warn"', None),
    ('count_over_time({app=~".+"} |= "needle" [1m])', 60),
    ('sum by (level) (count_over_time({app=~".+"} |= "m2" | json [2m]))', 60),
    ('sum by (app) (bytes_over_time({app=~".+"} |= "error" [1m]))', 30),
    ('max_over_time({app=~".+"} |= "needle" | json | unwrap n [5m])', 60),
    ('sum(count_over_time({app=~".+"} |= "needle" | json | level="error" [5m]))', None),
]


@pytest.mark.parametrize("columnar", [True, False])
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize(("query", "step"), QUERIES)
def test_a_source_that_filters_next_to_the_data_gives_the_same_answers(
        query: str, step: int | None, direction: str, columnar: bool) -> None:
    plain, filtering = _fill(MemorySource(16)), _fill(MemorySource(16, prefilter=True))

    def answer(src: MemorySource) -> Any:
        instant = step is None and not query.startswith("{")
        qp = QueryParams(["t"], 1400 * S if instant else 1000 * S, 1400 * S, limit=25,
                         direction=direction, step_ns=step and step * S, instant=instant,
                         options=ExecOptions(columnar=columnar))
        res = evaluate(src, query, qp)
        return res.to_loki_json()["result"], res.stats.lines_processed

    want, read_all = answer(plain)
    assert want, "the query must find something, or the comparison shows nothing"
    got, read_filtered = answer(filtering)
    assert got == want
    assert read_filtered < read_all  # the source did leave lines out
