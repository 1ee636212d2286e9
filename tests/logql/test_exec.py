"""Time splits and the unit runner of query execution (`sluiceway.logql._exec`)."""

from __future__ import annotations

import threading

import pytest

from sluiceway.logql import ExecOptions, QueryCancelled, split_range
from sluiceway.logql._exec import Aborted, run_units

H = 3600 * 10**9


def test_splits_are_aligned_to_the_interval_from_the_epoch() -> None:
    assert split_range(H + 5, 3 * H + 7, H) == [(H + 5, 2 * H), (2 * H, 3 * H),
                                                (3 * H, 3 * H + 7)]
    assert split_range(0, 2 * H, H) == [(0, H), (H, 2 * H)]
    assert split_range(5, 9, 0) == [(5, 9)]  # no splitting
    assert split_range(9, 9, H) == [(9, 9)]


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
