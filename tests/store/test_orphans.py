"""The compactor's orphan sweep (`store/_orphans.py`): a chunk object no index object
names goes once it is older than `retention_delete_delay`, and nothing else goes: not a
young one (its index object may be on its way from another process), not one whose index
object this process is writing right now (whatever the delay), not while the index is
damaged, and never anything in `quarantine/`. In process, real store on disk; the crash
that makes a real orphan is in `test_index_crash.py`."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np

from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import CompactorConfig, LocalDir, Store, StoreConfig
from tests.inproc import wait_for

DELAY = 3600.0


def _block(k: int, base: int, app: str = "a") -> EntryBlock:
    return EntryBlock.from_lines({"app": app}, np.arange(20, dtype=np.int64) + base + k * 100,
                                 [f"{app} {k} {i}".encode() for i in range(20)])


def _store(data: Path, objects: LocalDir | None = None, delay: float = DELAY) -> Store:
    cfg = StoreConfig(data_dir=data, compaction_enabled=False, index_sync_period=0)
    return Store(cfg, objects=objects if objects is not None else LocalDir(data / "tenants"),
                 compactor=CompactorConfig(retention_delete_delay=delay))


def _lines(st: Store) -> list[bytes]:
    return sorted(ln for ref in st.series(["fake"], [Matcher("app", "=~", ".+")], 0, 2**62)
                  for b in st.blocks(ref, 0, 2**62, "forward") for ln in b.lines())


def _chunks(data: Path, under: str = "") -> set[Path]:
    return set((data / "tenants" / "t-fake" / under / "chunks").glob("*/*.chunk"))


def _orphan_of(chunk: Path, under: Path | None = None) -> Path:
    """A copy of `chunk` under a name no index object knows (same stream, same day)."""
    fp, mint, _ = chunk.name.split("-")
    dst = (under or chunk.parent) / f"{fp}-{mint}-0rphan00.chunk"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(chunk, dst)
    return dst


def test_an_unnamed_chunk_goes_only_once_older_than_the_delay(tmp_path: Path) -> None:
    data = tmp_path / "data"
    st = _store(data)
    try:
        base = time.time_ns()
        st.push("fake", [_block(0, base)]).result()
        st.flush_all()
        [named] = _chunks(data)
        orphan = _orphan_of(named)
        waiting = _orphan_of(named, data / "tenants" / "t-fake" / "quarantine" / "unindexed"
                             / "chunks" / named.parent.name)
        want = _lines(st)
        st.compact()  # young: its index object may be on its way
        assert orphan.exists() and st.orphans_deleted == 0
        swept = st.sweep_orphans(now=time.time() + DELAY - 60)
        assert orphan.exists() and swept.chunks == 0
        size = orphan.stat().st_size
        swept = st.sweep_orphans(now=time.time() + DELAY + 1)
        assert (swept.chunks, swept.bytes) == (1, size)
        assert (st.orphans_deleted, st.orphan_bytes_deleted) == (1, size)
        assert not orphan.exists()
        assert named.exists() and waiting.exists()  # served; quarantine is never touched
        assert _lines(st) == want
    finally:
        st.close()


def test_no_sweep_while_the_index_is_damaged(tmp_path: Path) -> None:
    """An index object gone while in service marks the index damaged: nothing is swept
    (here the tenant's only object went, so the next start finds no index while chunks
    are, and `_recover.py` takes the chunk back)."""
    data = tmp_path / "data"
    st = _store(data)
    try:
        base = time.time_ns()
        st.push("fake", [_block(0, base)]).result()
        st.flush_all()
        [chunk] = _chunks(data)
        orphan = _orphan_of(chunk)
        [obj] = (data / "tenants" / "index").rglob("*.idx")
        obj.unlink()
        st.sync_index()
        assert st.tenants["fake"].index_damaged
        swept = st.sweep_orphans(now=time.time() + DELAY + 1)
        assert (swept.chunks, swept.skipped) == (0, 1)
        assert chunk.exists() and orphan.exists()
    finally:
        st.close()
    st = _store(data)  # the next start takes the chunk back
    try:
        assert len(_lines(st)) == 20
    finally:
        st.close()


class _PausedIndexWrite(LocalDir):
    """A LocalDir that holds a flush between its chunks and its index object until told
    (a pause point)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.armed = False
        self.chunks_written = threading.Event()
        self.go_on = threading.Event()

    def put_many(self, items):  # type: ignore[no-untyped-def]
        if self.armed and any(k.endswith(".idx") for k, _ in items):
            self.chunks_written.set()
            assert self.go_on.wait(60)
        return super().put_many(items)


class _SaysWhenWaitedFor:
    """The store's flush lock, which also says when the sweep's thread waits for it."""

    def __init__(self, lock: threading.Lock, waited: threading.Event) -> None:
        self.lock = lock
        self.waited = waited

    def __enter__(self) -> bool:
        if threading.current_thread().name == "sweep":
            self.waited.set()
        return self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_a_chunk_whose_index_object_is_being_written_is_not_swept(tmp_path: Path) -> None:
    """Delay 0: a flush has written its chunk and waits before its index object until
    the sweep has either waited for that flush or finished; the sweep must wait for it,
    and the chunk is named by then (without the wait it would be deleted while its index
    object is on its way)."""
    data = tmp_path / "data"
    objects = _PausedIndexWrite(data / "tenants")
    st = _store(data, objects, delay=0)
    st._flush_mutex = _SaysWhenWaitedFor(st._flush_mutex, objects.go_on)  # type: ignore[assignment]
    try:
        base = time.time_ns()
        st.push("fake", [_block(0, base)]).result()
        st.flush_all()  # the index exists
        st.push("fake", [_block(1, base)]).result()
        objects.armed = True
        flush = threading.Thread(target=st.flush_all)
        flush.start()
        assert objects.chunks_written.wait(60)
        swept: list[int] = []

        def sweep() -> None:
            try:
                swept.append(st.sweep_orphans().chunks)
            finally:
                objects.go_on.set()

        t = threading.Thread(target=sweep, name="sweep")
        t.start()
        flush.join(60)
        t.join(60)
        wait_for(lambda: swept, "the sweep")
        assert swept == [0] and len(_chunks(data)) == 2
        assert len(_lines(st)) == 40
    finally:
        objects.go_on.set()
        st.close()


def test_disk_usage_tells_live_chunks_from_those_awaiting_deletion(tmp_path: Path) -> None:
    """What bench/ingest.py's compression figure counts: after a compaction, the merged
    chunk is live and its inputs wait for the delay, apart."""
    data = tmp_path / "data"
    st = _store(data)
    try:
        base = time.time_ns()
        for k in range(3):
            st.push("fake", [_block(k, base)]).result()
            st.flush_all()
        inputs = _chunks(data)
        assert len(inputs) == 3
        st.compact(min_age_s=0)
        [merged] = _chunks(data) - inputs
        orphan = _orphan_of(merged)
        u = st.disk_usage()
        assert u["chunks_live"] == merged.stat().st_size
        assert u["chunks_awaiting_deletion"] == sum(p.stat().st_size for p in inputs)
        assert u["chunks_unnamed"] == orphan.stat().st_size
        assert u["chunks"] == u["chunks_live"] + u["chunks_awaiting_deletion"] \
            + u["chunks_unnamed"]
    finally:
        st.close()


def _lose_index_object_of(data: Path, chunk: Path) -> None:
    """Delete by hand (the store stopped) every index object that names `chunk`: a lost
    index object, which the next start cannot tell from none."""
    from sluiceway.store._index import decode

    rel = chunk.relative_to(data / "tenants" / "t-fake").as_posix()
    for p in (data / "tenants" / "index").rglob("*.idx"):
        if any(e.ref.path == rel for e in decode(p.read_bytes(), str(p)).adds):
            p.unlink()


def test_an_unnamed_chunk_wholly_past_its_streams_retention_goes(tmp_path: Path) -> None:
    """Two streams' chunks lose their index object; both are two hours old. Stream a
    keeps lines an hour (the tenant's retention): its chunk goes. Stream b keeps them
    four (a per-stream retention, as the retention code decides): its chunk's lines
    would still be served, it is kept and counted."""
    data = tmp_path / "data"
    cfg = StoreConfig(data_dir=data, compaction_enabled=False, index_sync_period=0)

    def store() -> Store:
        st = Store(cfg, objects=LocalDir(data / "tenants"),
                   compactor=CompactorConfig(retention_delete_delay=60),
                   retention_for=lambda _t: 3600.0)
        st.stream_retention_for = lambda _t, labels: 4 * 3600.0 if labels["app"] == "b" \
            else 3600.0
        return st

    base = time.time_ns() - 2 * 3600 * 10**9
    st = store()
    try:
        st.push("fake", [_block(0, base, "a"), _block(0, base, "b")]).result()
        st.flush_all()
        first = _chunks(data)
        st.push("fake", [_block(1, base, "a"), _block(1, base, "b")]).result()
        st.flush_all()
        lost = _chunks(data) - first
    finally:
        st.close()
    assert len(lost) == 2
    for chunk in lost:
        _lose_index_object_of(data, chunk)
    [expired] = [c for c in lost if st.tenants["fake"].streams[int(c.name.split("-")[0], 16)]
                 .labels["app"] == "a"]
    st = store()
    try:
        assert len(_lines(st)) == 40  # the lost object's lines are not served
        swept = st.sweep_orphans(now=time.time() + 61)
        assert not expired.exists()
        assert (lost - {expired}).pop().exists()  # kept: its lines are served nowhere else
        assert (swept.chunks, swept.expired, swept.kept) == (1, 1, 1)
        assert st.unnamed_kept["fake"][0] == 1
    finally:
        st.close()


def test_lines_a_processed_delete_request_removed_count_as_served(tmp_path: Path) -> None:
    """A crash leaves a copy of a chunk; then a delete request cuts the first lines out
    of the named chunk (its range shrinks). The copy still goes: the request applies to
    its lines as much, so the lines the named chunk lacks are ones that would be gone."""
    from sluiceway.server._deletion import compile_delete

    data = tmp_path / "data"
    cfg = StoreConfig(data_dir=data, compaction_enabled=False, index_sync_period=0)
    st = Store(cfg, objects=LocalDir(data / "tenants"),
               compactor=CompactorConfig(retention_delete_delay=60,
                                         delete_request_cancel_period=0))
    st.deletes.compile = compile_delete
    try:
        base = (time.time_ns() - 600 * 10**9) // 10**6 * 10**6
        ts = base + np.arange(20, dtype=np.int64) * 10**6  # a line a millisecond
        st.push("fake", [EntryBlock.from_lines({"app": "a"}, ts, [
            f"{'drop' if i < 5 else 'keep'} {i}".encode() for i in range(20)])]).result()
        st.flush_all()
        [named] = _chunks(data)
        orphan = _orphan_of(named)
        st.deletes.add("fake", '{app="a"} |= "drop"', base // 10**6, base // 10**6 + 100,
                       time.time())
        assert st.process_deletes() == 5
        swept = st.sweep_orphans(now=time.time() + 61)
        assert (swept.chunks, swept.kept) == (1, 0)
        assert not orphan.exists()
        assert _lines(st) == sorted(f"keep {i}".encode() for i in range(5, 20))
    finally:
        st.close()


def test_a_lost_chunk_of_late_lines_inside_a_served_chunks_range_is_kept(
        tmp_path: Path) -> None:
    """Out-of-order writes: a chunk of late lines lies inside the time range of a chunk
    flushed before. Its index object lost, the served chunk covers its time range but
    not its lines: it is kept (a cover by time alone would delete the only copy)."""
    data = tmp_path / "data"
    base = time.time_ns() - 600 * 10**9
    st = _store(data, delay=60)
    try:
        even = base + 2 * np.arange(50, dtype=np.int64)
        st.push("fake", [EntryBlock.from_lines({"app": "a"}, even, [
            f"on time {i}".encode() for i in range(50)])]).result()
        st.flush_all()
        first = _chunks(data)
        odd = base + 41 + 2 * np.arange(10, dtype=np.int64)
        st.push("fake", [EntryBlock.from_lines({"app": "a"}, odd, [
            f"late {i}".encode() for i in range(10)])]).result()
        st.flush_all()
        [late] = _chunks(data) - first
        assert len(_lines(st)) == 60
    finally:
        st.close()
    _lose_index_object_of(data, late)
    st = _store(data, delay=60)
    try:
        assert len(_lines(st)) == 50
        swept = st.sweep_orphans(now=time.time() + 61)
        assert late.exists()
        assert (swept.chunks, swept.kept) == (0, 1)
    finally:
        st.close()


def test_recover_chunks_takes_back_what_the_sweep_keeps_and_leaves_copies(
        tmp_path: Path) -> None:
    """`recover_chunks` (`sluiceway server --recover-chunks`): at that start, a lost index
    object's chunk is named again; a copy of a served chunk (a crash's orphan) is not (it
    is left to the sweep)."""
    data = tmp_path / "data"
    base = time.time_ns() - 600 * 10**9
    st = _store(data)
    try:
        st.push("fake", [_block(0, base)]).result()
        st.flush_all()
        [named] = _chunks(data)
        st.push("fake", [_block(1, base)]).result()
        st.flush_all()
        [lost] = _chunks(data) - {named}
        want = _lines(st)
    finally:
        st.close()
    copy = _orphan_of(named)
    _lose_index_object_of(data, lost)
    cfg = StoreConfig(data_dir=data, compaction_enabled=False, index_sync_period=0,
                      recover_chunks=True)
    st = Store(cfg, objects=LocalDir(data / "tenants"),
               compactor=CompactorConfig(retention_delete_delay=60))
    try:
        assert _lines(st) == want  # every line once
        live = {e.ref.path for e in st.tenants["fake"].index.live()}
        root = data / "tenants" / "t-fake"
        assert lost.relative_to(root).as_posix() in live
        assert copy.relative_to(root).as_posix() not in live
        swept = st.sweep_orphans(now=time.time() + 61)
        assert (swept.chunks, swept.kept) == (1, 0) and not copy.exists()
        assert _lines(st) == want
    finally:
        st.close()
