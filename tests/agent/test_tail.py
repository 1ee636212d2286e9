"""File tailing on real files: globs, rotation by rename, copytruncate, deletion, positions."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from sluiceway.agent._config import FileInput
from sluiceway.agent._positions import Checkpoint, Positions
from sluiceway.agent._records import Piece
from sluiceway.agent._stats import Stats
from sluiceway.agent._tail import FileTailer


class Capture:
    """The tailer's downstream: records lines and (optionally) acks them at once."""

    def __init__(self, positions: Positions, ack: bool = True) -> None:
        self.positions, self.ack = positions, ack
        self.lines: list[str] = []
        self.by_file: dict[str, list[str]] = {}
        self.cks: list[Checkpoint] = []

    def __call__(self, pieces: list[Piece], n: int, nbytes: int,
                 cks: list[Checkpoint], can_wait: bool = False) -> None:
        assert can_wait, "a file's lines can be read again: the reader may wait"
        for p in pieces:
            lines = [line.decode() for line in p.lines]
            self.lines += lines
            self.by_file.setdefault(p.labels.get("filename", ""), []).extend(lines)
        self.cks += cks
        if self.ack:
            self.positions.done(cks)


def tailer(tmp: Path, ack: bool = True, **opts: Any) -> tuple[FileTailer, Capture, Positions]:
    cfg = FileInput.model_validate({
        "type": "file", "paths": [str(tmp / "logs" / "*.log")], "start_at": "beginning",
        "glob_interval": 0, "rotate_wait": 0.2, "fingerprint_bytes": 32, **opts})
    positions = Positions(tmp / "positions.json")
    cap = Capture(positions, ack)
    t = FileTailer(cfg, positions, cap, Stats(), 100, 1 << 20, threading.Event())
    t.scan()
    return t, cap, positions


def drain(t: FileTailer, rounds: int = 5) -> None:
    for _ in range(rounds):
        while t.step():
            pass


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with open(path, mode) as f:
        f.write("".join(line + "\n" for line in lines))


def nums(prefix: str, a: int, b: int) -> list[str]:
    return [f"{prefix} {i:05d}" for i in range(a, b)]


def test_start_at_end_skips_existing_then_follows(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    write(tmp_path / "logs" / "a.log", nums("old", 0, 10))
    t, cap, _ = tailer(tmp_path, start_at="end")
    drain(t)
    assert cap.lines == []
    write(tmp_path / "logs" / "a.log", nums("new", 0, 5))
    drain(t)
    assert cap.lines == nums("new", 0, 5)


def test_new_files_are_read_from_the_start_and_partials_wait(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    t, cap, _ = tailer(tmp_path, start_at="end")
    write(logs / "b.log", nums("b", 0, 250))
    with open(logs / "b.log", "a") as f:
        f.write("half a li")
    drain(t)
    assert cap.lines == nums("b", 0, 250)  # batches of <= 100 lines, order kept
    with open(logs / "b.log", "a") as f:
        f.write("ne\n")
    drain(t)
    assert cap.lines[-1] == "half a line"
    assert cap.by_file == {str(logs / "b.log"): [*nums("b", 0, 250), "half a line"]}


def test_rename_rotation_loses_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    write(app, nums("one", 0, 50))
    t, cap, positions = tailer(tmp_path)
    drain(t)
    f = open(app, "a")  # noqa: SIM115 - the app keeps its handle across the rename
    os.rename(app, logs / "app.log.1")
    f.write("".join(x + "\n" for x in nums("late", 0, 20)))  # written after the rename
    f.close()
    write(app, nums("two", 0, 30))
    drain(t)
    assert cap.lines[:50] == nums("one", 0, 50)
    assert sorted(cap.lines[50:]) == sorted(nums("late", 0, 20) + nums("two", 0, 30))
    assert t.stats.file_rotations == 1
    # the rotated file is released once rotate_wait passed, and its position forgotten
    import time
    time.sleep(0.25)
    drain(t)
    assert [x.path for x in t.files.values()] == [str(app)]
    assert [f.path for f in positions.snapshot().values()] == [str(app)]


def test_copytruncate_restarts_at_zero(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    write(app, nums("before", 0, 40))
    t, cap, positions = tailer(tmp_path)
    drain(t)
    shutil.copy(app, tmp_path / "app.log.1")  # outside the glob, as logrotate would
    with open(app, "r+") as f:
        f.truncate(0)
    write(app, nums("after", 0, 10))
    drain(t)
    assert cap.lines == nums("before", 0, 40) + nums("after", 0, 10)
    assert t.stats.file_truncations == 1
    (fpos,) = positions.snapshot().values()
    assert fpos.committed == app.stat().st_size


def test_truncate_and_regrow_past_offset_detected_by_fingerprint(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    write(app, nums("aaaa", 0, 5))
    t, cap, _ = tailer(tmp_path)
    drain(t)
    with open(app, "r+") as f:  # truncated and rewritten longer before we looked
        f.truncate(0)
    write(app, nums("bbbb", 0, 20))
    drain(t)
    assert cap.lines == nums("aaaa", 0, 5) + nums("bbbb", 0, 20)


def test_deleted_file_is_released(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "gone.log", nums("g", 0, 3))
    t, cap, positions = tailer(tmp_path)
    drain(t)
    fd = next(iter(t.files.values())).fd
    os.unlink(logs / "gone.log")
    import time
    drain(t)
    time.sleep(0.25)
    drain(t)
    assert t.files == {}
    assert positions.snapshot() == {}
    assert not os.path.exists(f"/proc/self/fd/{fd}") or "gone.log" not in os.readlink(
        f"/proc/self/fd/{fd}")
    assert cap.lines == nums("g", 0, 3)


def test_restart_resumes_from_saved_position(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", nums("a", 0, 30))
    t, cap, positions = tailer(tmp_path)
    drain(t)
    positions.save(force=True)
    t.close()
    write(logs / "a.log", nums("a", 30, 40))
    t2, cap2, _ = tailer(tmp_path)
    drain(t2)
    assert cap2.lines == nums("a", 30, 40)


def test_unacked_lines_are_read_again_and_done_ranges_skipped(tmp_path: Path) -> None:
    """Ranges acked (or spilled) out of order are saved; a restart reads only the rest."""
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", nums("a", 0, 300))  # three pieces of 100 lines
    t, cap, positions = tailer(tmp_path, ack=False)
    drain(t)
    assert len(cap.cks) == 3
    positions.done([cap.cks[1]])  # only the middle piece is durable downstream
    positions.save(force=True)
    t.close()
    t2, cap2, _ = tailer(tmp_path)
    drain(t2)
    assert cap2.lines == nums("a", 0, 100) + nums("a", 200, 300)


def test_saved_position_of_another_file_is_not_trusted(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", nums("first", 0, 10))
    t, _, positions = tailer(tmp_path)
    drain(t)
    positions.save(force=True)
    t.close()
    with open(logs / "a.log", "r+") as f:  # same inode, other content (inode reuse)
        f.truncate(0)
        f.write("".join(x + "\n" for x in nums("other", 0, 30)))
    t2, cap2, _ = tailer(tmp_path)
    drain(t2)
    assert cap2.lines == nums("other", 0, 30)


def test_corrupt_positions_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "positions.json").write_bytes(b"sluiceway-positions v1 crc32=1\n{}")
    assert Positions(tmp_path / "positions.json").saved("x") is None
    p = Positions(tmp_path / "positions.json")
    p.register("1:2", "/x", 10, "fp", 4)
    p.save(force=True)
    raw = (tmp_path / "positions.json").read_bytes()
    saved = Positions(tmp_path / "positions.json").saved("1:2")
    assert saved is not None
    assert {k: saved[k] for k in ("path", "offset", "fp", "fp_len", "done")} == {
        "path": "/x", "offset": 10, "fp": "fp", "fp_len": 4, "done": []}
    assert {"epoch", "line", "emitted", "lost", "lost_ranges"} <= set(saved)  # the ledger
    (tmp_path / "positions.json").write_bytes(raw[:-3])  # torn
    assert Positions(tmp_path / "positions.json").saved("1:2") is None


def test_huge_line_is_cut_without_shifting_the_position(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    big = "y" * 300_000
    write(logs / "a.log", [big, "after"])
    t, cap, positions = tailer(tmp_path, max_line_bytes=65536, read_bytes=65536)
    drain(t)
    assert "".join(cap.lines[:-1]) == big and cap.lines[-1] == "after"
    (fpos,) = positions.snapshot().values()
    assert fpos.committed == (logs / "a.log").stat().st_size


def test_unfinished_line_of_a_truncated_file_is_counted_lost_not_shipped(
        tmp_path: Path) -> None:
    """The bytes after the last newline are the head of a line whose end the truncation
    took: shipping them would store a torn line."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    write(app, nums("aaaa", 0, 5))
    with open(app, "a") as f:
        f.write("half a li")
    t, cap, _ = tailer(tmp_path)
    drain(t)
    with open(app, "r+") as f:
        f.truncate(0)
    write(app, nums("bbbb", 0, 20))  # regrown past the old offset, other first bytes
    drain(t)
    assert cap.lines == nums("aaaa", 0, 5) + nums("bbbb", 0, 20)
    assert t.stats.lost_by_reason == {"truncated": 1}
    assert t.stats.truncated_bytes_lost == len("half a li")
    assert t.stats.file_truncations == 1


class Gate(Capture):
    """A downstream that blocks on its `block_at`-th call until released: a full queue."""

    def __init__(self, positions: Positions, block_at: int) -> None:
        super().__init__(positions)
        self.calls, self.block_at = 0, block_at
        self.blocked, self.release = threading.Event(), threading.Event()

    def __call__(self, pieces: list[Piece], n: int, nbytes: int,
                 cks: list[Checkpoint], can_wait: bool = False) -> None:
        self.calls += 1
        if self.calls == self.block_at:
            self.blocked.set()
            assert self.release.wait(30)
        super().__call__(pieces, n, nbytes, cks, can_wait)


def wait_until(pred: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_truncation_while_the_reader_blocks_is_seen_and_its_loss_counted(
        tmp_path: Path) -> None:
    """The reader blocks in emit with lines read and the rest of the file unread; the
    file is truncated and regrown past the offset with the same first bytes. The watcher
    counted the unread lines and saw the shrink, so the reader starts over at 0 with no
    piece of a line shipped, and exactly the unread lines are counted lost."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    header = "=" * 40
    old = [header, *nums("old", 0, 2000)]
    write(app, old[:1000])
    cfg = FileInput.model_validate({
        "type": "file", "paths": [str(logs / "*.log")], "start_at": "beginning",
        "glob_interval": 0, "poll_interval": 0.01, "fingerprint_bytes": 32,
        "read_bytes": 4096})
    positions = Positions(tmp_path / "positions.json")
    gate = Gate(positions, block_at=3)
    t = FileTailer(cfg, positions, gate, Stats(), 100, 1 << 20, threading.Event())
    t.scan()
    runner = threading.Thread(target=t.run, daemon=True)
    runner.start()
    try:
        assert gate.blocked.wait(20)
        write(app, old[1000:])
        size = app.stat().st_size
        (key,) = t.files
        wait_until(lambda: positions.snapshot()[key].size == size
                   and positions.snapshot()[key].lag_lines is not None, "lines counted")
        waiting = positions.snapshot()[key].lag_lines
        assert waiting is not None and 0 < waiting < len(old)
        with open(app, "r+") as f:
            f.truncate(0)
        wait_until(lambda: t.stats.file_truncations == 1, "the shrink seen")
        # Saved now, the position says "start over": an agent stopped before the reader
        # wakes must not resume at the old offset in a file with the same first bytes.
        positions.save(force=True)
        saved = Positions(tmp_path / "positions.json").saved(key)
        assert saved is not None and saved["offset"] == 0
        new = [header, *nums("new", 0, 3000)]
        write(app, new)
        gate.release.set()
        wait_until(lambda: len(gate.lines) >= len(old) - waiting + len(new), "new lines")
    finally:
        gate.release.set()
        t.stop.set()
        runner.join(10)
        t.close()
    n_old = len(old) - waiting
    assert gate.lines == old[:n_old] + new
    assert t.stats.lost_by_reason == {"truncated": waiting}
    assert t.stats.truncated_bytes_lost == sum(len(x) + 1 for x in old[n_old:])
    assert t.stats.file_truncations == 1


def test_truncation_between_the_stat_and_the_first_bytes_is_counted_once(
        tmp_path: Path) -> None:
    """A look stats the file, then reads its first bytes: truncated just between, the
    first bytes tell it is new content while the stat still gives the old size. Taken as
    the new content's size, that stale size made the next look see a second, phantom
    truncation (seen in the agent: 953 lines lost, then 1 more, 1 ms apart). The
    truncation is counted once, with exactly the lines the reader had not reached."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    header = "=" * 40
    old = [header, *nums("old", 0, 2000)]
    write(app, old[:1000])
    cfg = FileInput.model_validate({
        "type": "file", "paths": [str(logs / "*.log")], "start_at": "beginning",
        "glob_interval": 0, "poll_interval": 0.01, "fingerprint_bytes": 32,
        "read_bytes": 4096})
    positions = Positions(tmp_path / "positions.json")
    gate = Gate(positions, block_at=3)
    t = FileTailer(cfg, positions, gate, Stats(), 100, 1 << 20, threading.Event())
    t.scan()
    looks_after_cut = 0

    def truncate_between(tracked: Any) -> None:  # on the watcher's thread, under its lock
        nonlocal looks_after_cut
        if t.stats.file_truncations == 0:
            with open(app, "r+") as f:
                f.truncate(0)
        else:
            looks_after_cut += 1

    runner = threading.Thread(target=t.run, daemon=True)
    runner.start()
    try:
        assert gate.blocked.wait(20)
        write(app, old[1000:])
        size = app.stat().st_size
        (key,) = t.files
        wait_until(lambda: positions.snapshot()[key].size == size
                   and positions.snapshot()[key].lag_lines is not None, "lines counted")
        waiting = positions.snapshot()[key].lag_lines
        assert waiting is not None and 0 < waiting < len(old)
        t.look_hook = truncate_between
        # The cut, then several more rounds of the watcher looking at the empty file.
        wait_until(lambda: t.stats.file_truncations >= 1 and looks_after_cut >= 5,
                   "the truncation seen and the file looked at again")
        t.look_hook = None
        assert t.stats.file_truncations == 1
        assert t.stats.lost_by_reason == {"truncated": waiting}
        new = [header, *nums("new", 0, 3000)]
        write(app, new)
        gate.release.set()
        wait_until(lambda: len(gate.lines) >= len(old) - waiting + len(new), "new lines")
    finally:
        gate.release.set()
        t.stop.set()
        runner.join(10)
        t.close()
    n_old = len(old) - waiting
    assert gate.lines == old[:n_old] + new
    assert t.stats.lost_by_reason == {"truncated": waiting}
    assert t.stats.truncated_bytes_lost == sum(len(x) + 1 for x in old[n_old:])
    assert t.stats.file_truncations == 1
