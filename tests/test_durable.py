"""Every file renamed (or created) into place is followed by an fsync of its directory, in
store (chunks, index), buffer (spill cursor and segments) and agent (positions): without
it, a power cut can take back a rename whose WAL or source was already released.

The spy wraps `os.fsync` and records, in order, which regular files and which directories
were synced, and which renames happened."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sluiceway.agent._positions import Positions
from sluiceway.buffer import Buffer, BufferConfig
from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import CompactorConfig, Store, StoreConfig

Event = tuple[str, str]  # ("dir" | "file" | "rename", path)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Event]]:
    out: list[Event] = []
    lock = threading.Lock()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        real_fsync(fd)
        with lock:
            out.append((kind, os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        with lock:
            out.append(("rename", str(Path(dst).resolve())))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    yield out


def _synced_after(events: list[Event], kind: str, path: Path, after: int) -> int | None:
    """Index of the first `kind` sync of `path` at or after event `after`."""
    want = str(path.resolve())
    for i in range(after, len(events)):
        if events[i] == (kind, want):
            return i
    return None


def _renamed(events: list[Event], path: Path) -> int:
    want = str(path.resolve())
    hits = [i for i, e in enumerate(events) if e == ("rename", want)]
    assert hits, f"{path} was never renamed into place: {events}"
    return hits[-1]


def _block(labels: dict[str, str], base: int, n: int = 5) -> EntryBlock:
    return EntryBlock.from_lines(labels, np.arange(n, dtype=np.int64) + base,
                                 [f"{labels} line {i}".encode() for i in range(n)])


def test_chunk_dir_is_synced_before_the_index_names_the_chunk(tmp_path: Path,
                                                               events: list[Event]) -> None:
    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    try:
        st.push("fake", [_block({"app": "a"}, time.time_ns())]).result()
        st.flush_all()
        chunks = list(tmp_path.glob("tenants/*/chunks/*/*.chunk"))
        assert len(chunks) == 1
        renamed = _renamed(events, chunks[0])
        dir_synced = _synced_after(events, "dir", chunks[0].parent, renamed)
        assert dir_synced is not None, "the chunk's directory was not fsynced after the rename"
        index = next(tmp_path.glob("tenants/index/t-fake/*/*.idx"))
        named = _renamed(events, index)
        assert dir_synced < named, \
            "the index named the chunk before its directory entry was durable"
        assert _synced_after(events, "dir", index.parent, named) is not None
        assert not list(tmp_path.rglob("*.tmp"))
    finally:
        st.close()


def test_the_checkpoint_is_durable_before_wal_segments_are_released(
        tmp_path: Path, events: list[Event], monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk named in the (synced) index → checkpoint renamed into place and its
    directory synced → only then the WAL segment it covers is deleted."""
    real_unlink = os.unlink

    def unlink(path: str | os.PathLike[str], *args: object, **kw: object) -> None:
        real_unlink(path, *args, **kw)  # type: ignore[arg-type]
        events.append(("unlink", str(Path(path).resolve())))

    monkeypatch.setattr(os, "unlink", unlink)
    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    try:
        st.push("fake", [_block({"app": "a"}, time.time_ns())]).result()
        segment = (tmp_path / "wal" / f"{st.wal.segment:08d}.wal").resolve()
        st.flush_all()  # rotates, so the segment holding the record can go
        assert not segment.exists()
    finally:
        st.close()
    index = next(tmp_path.glob("tenants/index/t-fake/*/*.idx"))
    indexed = _synced_after(events, "dir", index.parent, _renamed(events, index))
    checkpoint = _renamed(events, tmp_path / "checkpoint.json")
    dir_synced = _synced_after(events, "dir", tmp_path, checkpoint)
    released = events.index(("unlink", str(segment)))
    assert indexed is not None and dir_synced is not None
    assert indexed < checkpoint < dir_synced < released


def test_index_compaction_syncs_its_directory(tmp_path: Path, events: list[Event]) -> None:
    """The object that folds a period's index objects together is renamed into place and
    its directory synced before the objects it supersedes are deleted."""
    cfg = StoreConfig(data_dir=tmp_path, compaction_enabled=False)
    st = Store(cfg, compactor=CompactorConfig(retention_delete_delay=0))
    try:
        for k in range(3):
            st.push("fake", [_block({"app": "a"}, time.time_ns() + k * 100)]).result()
            st.flush_all()
        small = set(tmp_path.glob("tenants/index/t-fake/*/w-*.idx"))
        assert len(small) == 3
        st.compact()
        compacted = next(tmp_path.glob("tenants/index/t-fake/*/c-*.idx"))
        renamed = _renamed(events, compacted)
        assert _synced_after(events, "dir", compacted.parent, renamed) is not None
        st.compact()  # past delete_delay (0): the small objects go
        assert not set(tmp_path.glob("tenants/index/t-fake/*/*.idx")) & small
        assert not list(tmp_path.rglob("*.tmp"))
    finally:
        st.close()
    st = Store(cfg)
    try:
        lines = [ln for ref in st.series(["fake"], [Matcher("app", "=", "a")], 0, 2**62)
                 for b in st.blocks(ref, 0, 2**62, "forward") for ln in b.lines()]
        assert len(lines) == 15
    finally:
        st.close()


def test_spill_cursor_and_new_segments_sync_their_directory(tmp_path: Path,
                                                            events: list[Event]) -> None:
    spill = tmp_path / "spill"
    buf: Buffer[int] = Buffer(BufferConfig(max_items=10, when_full="spill", spill_dir=spill,
                                           record_items=5, segment_bytes=4096))
    try:
        for i in range(200):
            buf.put(i)
        segs = sorted(spill.glob("*.seg"))
        assert segs
        first_data_sync = next(i for i, e in enumerate(events)
                               if e == ("file", str(segs[0].resolve())))
        # a new segment's directory entry is durable before its items count as spilled
        dir_sync = _synced_after(events, "dir", spill, 0)
        assert dir_sync is not None and dir_sync < first_data_sync
        got: list[int] = []
        while (b := buf.get_batch(50, max_wait=0.2)) is not None:
            got += b.items
            buf.ack(b)
        assert got == list(range(200))
        renamed = _renamed(events, spill / "cursor")
        assert _synced_after(events, "dir", spill, renamed) is not None
        assert not list(spill.glob("*.tmp"))
    finally:
        buf.close()


def test_agent_positions_sync_their_directory(tmp_path: Path, events: list[Event]) -> None:
    pos = Positions(tmp_path / "state" / "positions.json")
    pos.register("1:2", "/var/log/x.log", 0, "fp", 10)
    pos.add("1:2", 0, 0, 100)
    pos.done([("1:2", 0, 0, 100)])
    pos.save(force=True)
    renamed = _renamed(events, tmp_path / "state" / "positions.json")
    assert _synced_after(events, "dir", tmp_path / "state", renamed) is not None
    assert Positions(tmp_path / "state" / "positions.json").saved("1:2") is not None


def test_many_streams_flush_with_one_index_sync(tmp_path: Path, events: list[Event]) -> None:
    """Shutdown with many streams: the chunk files share their syncs and one index object
    names them all (one file synced), not one per stream; every line is there afterwards."""
    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    base = time.time_ns()
    n = 300
    blocks = [_block({"app": "many", "s": str(i)}, base, 3) for i in range(n)]
    st.push("fake", blocks).result()
    events.clear()
    st.close()
    indexes = list(tmp_path.glob("tenants/index/t-fake/*/*.idx"))
    assert len(indexes) == 1
    index_writes = [e for e in events if e[0] == "rename" and e[1].endswith(".idx")]
    assert len(index_writes) == 1
    chunks = list(tmp_path.glob("tenants/*/chunks/*/*.chunk"))
    assert len(chunks) == n
    day_dirs = {str(c.parent.resolve()) for c in chunks}
    dir_syncs = [e for e in events if e[0] == "dir" and e[1] in day_dirs]
    assert len(dir_syncs) == len(day_dirs)
    st = Store(StoreConfig(data_dir=tmp_path, compaction_enabled=False))
    try:
        assert st.replayed_records == 0
        series = st.series(["fake"], [Matcher("app", "=", "many")], 0, 2**62)
        lines = [ln for ref in series for b in st.blocks(ref, 0, 2**62, "forward")
                 for ln in b.lines()]
        assert len(lines) == 3 * n
    finally:
        st.close()


def test_client_file_sink_with_fsync_syncs_new_names(tmp_path: Path,
                                                     events: list[Event]) -> None:
    from sluiceway.client import RotatingFileSink

    sink = RotatingFileSink(tmp_path / "logs" / "app.jsonl", max_bytes=300, backups=2,
                            fsync=True)
    for i in range(10):
        sink.write_batch([{"msg": f"record {i}", "pad": "x" * 50}])
    sink.close()
    logs = tmp_path / "logs"
    created = _synced_after(events, "dir", logs, 0)
    assert created is not None  # the file's first name
    rotated = _renamed(events, logs / "app.jsonl.1")
    assert _synced_after(events, "dir", logs, rotated) is not None
