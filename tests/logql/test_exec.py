"""Time splits and the unit runner of query execution (`sluiceway.logql._exec`)."""

from __future__ import annotations

import threading

import pytest

from sluiceway.logql import ExecOptions, QueryCancelled, split_range
from sluiceway.logql._exec import MAX_SPLITS, Aborted, run_units

H = 3600 * 10**9


def test_splits_are_aligned_to_the_interval_from_the_epoch() -> None:
    assert split_range(H + 5, 3 * H + 7, H) == [(H + 5, 2 * H), (2 * H, 3 * H),
                                                (3 * H, 3 * H + 7)]
    assert split_range(0, 2 * H, H) == [(0, H), (H, 2 * H)]
    assert split_range(5, 9, 0) == [(5, 9)]  # no splitting
    assert split_range(9, 9, H) == [(9, 9)]


def test_a_very_long_range_makes_at_most_max_splits_pieces_on_the_interval_grid() -> None:
    # `count_over_time({...}[106751d])`: 2.5 million hours, which would be as many units.
    lo, hi = 5 * H + 7, 106_751 * 24 * H + 3
    pieces = split_range(lo, hi, H)
    assert len(pieces) <= MAX_SPLITS
    assert pieces[0][0] == lo and pieces[-1][1] == hi
    assert all(a == b for (_, a), (b, _) in zip(pieces, pieces[1:], strict=False))
    assert all(b % H == 0 for _, b in pieces[:-1])  # cuts on the hour grid
    assert len(split_range(0, MAX_SPLITS * H, H)) == MAX_SPLITS  # up to the cap: unchanged


def test_run_units_raises_the_earliest_units_error_and_stops_the_others() -> None:
    started: list[int] = []
    lock = threading.Lock()
    gate = threading.Event()

    def unit(k: int):  # type: ignore[no-untyped-def]
        def run(abort: threading.Event) -> int:
            with lock:
                started.append(k)
            if k == 1:
                gate.wait(10)
                raise ValueError("unit 1")
            if k == 2:
                gate.set()
                raise KeyError("unit 2")
            while not abort.is_set():  # a long unit: stops when told
                abort.wait(0.01)
            raise Aborted()
        return run

    with pytest.raises(ValueError, match="unit 1"):
        list(run_units([unit(k) for k in range(1, 10)], 3))
    assert len(started) <= 4  # nothing was started after the failure


def test_run_units_in_one_thread_is_sequential_and_cancellable() -> None:
    opts = ExecOptions()
    seen: list[int] = []

    def unit(k: int):  # type: ignore[no-untyped-def]
        def run(abort: threading.Event) -> int:
            seen.append(k)
            if k == 2:
                opts.cancel.set()
            return k
        return run

    with pytest.raises(QueryCancelled):
        list(run_units([unit(k) for k in range(5)], 1, opts))
    assert seen == [0, 1, 2]
