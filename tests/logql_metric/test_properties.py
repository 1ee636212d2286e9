"""Property: the vectorised window sums equal a brute-force count over random data."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.logql import MemorySource, QueryParams
from sluiceway.logql._metric import evaluate_metric, step_grid
from sluiceway.model import StreamBatch

MS = 1_000_000


@settings(max_examples=60, deadline=None)
@given(
    ts=st.lists(st.integers(0, 10_000), min_size=0, max_size=60),
    start=st.integers(0, 8_000), span=st.integers(0, 4_000), step=st.integers(1, 900),
    rng=st.integers(1, 3_000), offset=st.integers(-500, 500),
    block=st.integers(1, 9),
)
def test_count_and_bytes_match_brute_force(ts: list[int], start: int, span: int, step: int,
                                           rng: int, offset: int, block: int) -> None:
    src = MemorySource(block_size=block)
    lines = [f"l{'x' * (t % 7)}" for t in ts]  # distinct sizes, duplicates removed by ts+line
    src.push("t", [StreamBatch({"a": "b"}, [t * MS for t in ts], lines)])
    entries = sorted({(t * MS, line) for t, line in zip(ts, lines, strict=True)})
    params = QueryParams(["t"], start * MS, (start + span) * MS, step_ns=step * MS)
    off = f" offset {offset}ms" if offset else ""
    for fn, size in (("count_over_time", False), ("bytes_over_time", True)):
        got = evaluate_metric(src, f'{fn}({{a="b"}}[{rng}ms]{off})', params).result
        want = []
        for p in step_grid(params).points.tolist():
            end = p - offset * MS
            inside = [len(line) if size else 1 for t, line in entries
                      if end - rng * MS < t <= end]
            if inside:
                want.append([p // MS / 1000 if p % (1000 * MS) else p // (1000 * MS),
                             str(sum(inside))])
        assert (got[0]["values"] if got else []) == want


@settings(max_examples=40, deadline=None)
@given(
    samples=st.lists(st.tuples(st.integers(0, 5_000), st.integers(-50, 50)), max_size=40),
    start=st.integers(0, 4_000), span=st.integers(0, 2_000), step=st.integers(1, 700),
    rng=st.integers(1, 2_000),
)
def test_unwrapped_windows_match_brute_force(samples: list[tuple[int, int]], start: int,
                                             span: int, step: int, rng: int) -> None:
    src = MemorySource(block_size=5)
    src.push("t", [StreamBatch({"a": "b"}, [t * MS for t, _ in samples],
                               [f"v={v} i={i}" for i, (_, v) in enumerate(samples)])])
    params = QueryParams(["t"], start * MS, (start + span) * MS, step_ns=step * MS)
    q = f'max_over_time({{a="b"}} | logfmt v | unwrap v [{rng}ms])'
    got = evaluate_metric(src, q, params).result
    want = []
    for p in step_grid(params).points.tolist():
        inside = [v for t, v in samples if p - rng * MS < t * MS <= p]
        if inside:
            want.append([p // MS / 1000 if p % (1000 * MS) else p // (1000 * MS),
                         str(max(inside))])
    assert (got[0]["values"] if got else []) == want
