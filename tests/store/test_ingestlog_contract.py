"""The `IngestLog` contract (`sluiceway/store/_ingestlog.py`), run against every
implementation.

An implementation joins by adding one entry to `LOGS`: a factory that opens the log of
one place (a fresh temp directory per test here; a remote log uses a fresh stream or
subject) at a checkpoint position. Today there is one, `FileWal`. The heads rely on
exactly this: positions are opaque and only compared; appends resolve to durable
positions in `append` order; `replay(after)` gives every stored record after `after`,
in log order, unchanged; `release(upto)` never costs a record after `upto`; and a log
opened again never hands out a position it handed out before, even when every record was
released (the checkpoint names such positions).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sluiceway.model import EntryBlock, PushRecord
from sluiceway.store import FileWal, IngestLog

OpenLog = Callable[[Any], IngestLog[Any]]  # after (a position or None) -> the log


def _file_wal(place: Path) -> OpenLog:
    # Small segments: a handful of records spans several storage units.
    return lambda after: FileWal(place, segment_bytes=600, after=after)


# name -> factory(fresh empty directory) -> open(after) for the log kept there.
LOGS: dict[str, Callable[[Path], OpenLog]] = {
    "FileWal": _file_wal,
}


@pytest.fixture(params=sorted(LOGS))
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> OpenLog:
    return LOGS[request.param](tmp_path / "log")


def _record(k: int) -> PushRecord:
    block = EntryBlock.from_lines({"job": f"j{k % 3}"}, np.arange(4, dtype=np.int64) + k,
                                  [f"record {k} line {i}".encode() for i in range(4)])
    return PushRecord("t" if k % 2 else "u", [block])


def _key(r: PushRecord) -> tuple[str, list[tuple[dict[str, str], list[int], list[bytes]]]]:
    return r.tenant, [(b.labels, b.ts.tolist(), b.lines()) for b in r.blocks]


def _append_all(log: IngestLog[Any], records: list[PushRecord]) -> list[Any]:
    futures = [log.append(r) for r in records]
    return [f.result(30) for f in futures]


def test_positions_follow_the_order_of_appends(open_log: OpenLog) -> None:
    log = open_log(None)
    try:
        positions = _append_all(log, [_record(k) for k in range(20)])
    finally:
        log.close()
    pairs = zip(positions, positions[1:], strict=False)
    assert all(a < b and a <= b and not b <= a for a, b in pairs)


def test_concurrent_appends_resolve_in_position_order(open_log: OpenLog) -> None:
    """Appends from many threads: each future resolves to a distinct position, and replay
    gives every record once, in position order."""
    log = open_log(None)
    got: list[tuple[Any, PushRecord]] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for k in range(10):
            r = _record(100 * w + k)
            pos = log.append(r).result(30)
            with lock:
                got.append((pos, r))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    got.sort(key=lambda pr: pr[0])
    assert len({repr(p) for p, _ in got}) == 40
    log = open_log(None)
    try:
        replayed = list(log.replay(None))
    finally:
        log.close()
    assert [_key(r) for _, r in replayed] == [_key(r) for _, r in got]
    assert [p for p, _ in replayed] == [p for p, _ in got]


def test_replay_gives_the_records_after_a_position_unchanged(open_log: OpenLog) -> None:
    records = [_record(k) for k in range(12)]
    log = open_log(None)
    positions = _append_all(log, records)
    log.close()
    for k in (None, 0, 5, 11):
        after = None if k is None else positions[k]
        log = open_log(after)
        try:
            replayed = list(log.replay(after))
        finally:
            log.close()
        first = 0 if k is None else k + 1
        assert [p for p, _ in replayed] == positions[first:]
        assert [_key(r) for _, r in replayed] == [_key(r) for r in records[first:]]


def test_release_never_costs_a_record_after_it(open_log: OpenLog) -> None:
    records = [_record(k) for k in range(12)]
    log = open_log(None)
    positions = _append_all(log, records)
    log.close()
    log = open_log(positions[6])
    try:
        log.release(positions[6])
        replayed = list(log.replay(positions[6]))
    finally:
        log.close()
    assert [_key(r) for _, r in replayed] == [_key(r) for r in records[7:]]


def test_a_log_opened_again_never_repeats_a_position(open_log: OpenLog) -> None:
    """Everything released (as after a clean stop): the next log's positions still lie
    past the checkpoint, so a crash after it does not skip its records at replay."""
    log = open_log(None)
    old = _append_all(log, [_record(k) for k in range(5)])
    log.close()
    log.release(old[-1])  # as the store's stop does: after the last flush, closed
    log = open_log(old[-1])
    try:
        new = _append_all(log, [_record(k) for k in range(5, 8)])
    finally:
        log.close()
    assert all(p > old[-1] for p in new)
    log = open_log(old[-1])  # a crash: replay from the checkpoint
    try:
        assert [p for p, _ in log.replay(old[-1])] == new
    finally:
        log.close()


def test_positions_survive_their_json_form(open_log: OpenLog) -> None:
    log = open_log(None)
    try:
        positions = _append_all(log, [_record(k) for k in range(3)])
        for p in positions:
            assert log.position_from_json(log.position_to_json(p)) == p
        for junk in (None, "x", [1], {"a": 1}, [-1, 2], [1.5, 2]):
            with pytest.raises(ValueError):
                log.position_from_json(junk)
    finally:
        log.close()


def test_an_append_after_close_fails_and_is_not_stored(open_log: OpenLog) -> None:
    log = open_log(None)
    positions = _append_all(log, [_record(0)])
    log.close()
    late = log.append(_record(1))
    assert late.exception(30) is not None
    log = open_log(None)
    try:
        assert [p for p, _ in log.replay(None)] == positions
    finally:
        log.close()
