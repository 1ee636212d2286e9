"""The index as immutable objects in the object store (`sluiceway.store._index`).

What one writer puts, every reader folds to the same chunks in service, whatever it has
seen before; superseded objects are never read; compaction of the index says what the
objects it replaces said; chunks and objects out of service are deleted only after the
delay. And two stores on one object store: what one flushes, compacts or retires, the
other serves without a restart (every `index_sync_period`, and right after its own
flushes)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import CompactorConfig, IndexReader, LocalDir, Store, StoreConfig
from sluiceway.store._frames import HDR
from sluiceway.store._index import (
    IndexEntry,
    Removal,
    TenantIndex,
    Writer,
    decode,
    encode,
)
from sluiceway.store._stream import ChunkRef
from tests.inproc import wait_for

DAY = 86_400 * 10**9
T0 = 1_714_521_600 * 10**9  # 2024-05-01T00:00:00Z

NO_DELAY = CompactorConfig(retention_delete_delay=0)  # deleted at the first pass


def _entry(fp: int, day: int, k: int, level: int = 1) -> IndexEntry:
    mint = T0 + day * DAY + k * 1000
    path = f"chunks/2024-05-{day + 1:02d}/{fp:016x}-{mint}-{k:08x}.chunk"
    return IndexEntry(fp, f'{{s="{fp}"}}', ChunkRef(path, mint, mint + 999, 10, 100, 50,
                                                    level, 1.0))


def _paths(ti: TenantIndex) -> set[str]:
    return {e.ref.path for e in ti.live()}


def _reader(objects: LocalDir) -> TenantIndex:
    r = TenantIndex("fake", objects, "t-fake")
    r.sync()
    return r


class _CountingGets(LocalDir):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets: list[str] = []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return super().get(key)


def test_every_reader_folds_the_objects_to_what_the_writer_serves(tmp_path: Path) -> None:
    """Random flushes, replacements (compaction), removals (retention), index compactions
    and deletions after the delay, over three periods: after each step a reader that has
    followed all along and a fresh one agree with the writer, and nothing the writer
    serves is deleted."""
    rng = random.Random(5)
    objects = LocalDir(tmp_path)
    w = TenantIndex("fake", objects, "t-fake", Writer())
    follower = TenantIndex("fake", objects, "t-fake")
    k = 0
    now = time.time()
    for _ in range(120):
        op = rng.choice(["add", "add", "replace", "remove", "compact", "gc"])
        live = sorted(w.live(), key=lambda e: e.ref.path)
        if op == "add":
            entries = [_entry(rng.randint(1, 3), rng.randint(0, 2), k + i)
                       for i in range(rng.randint(1, 4))]
            k += len(entries)
            _, failed, err = w.add(entries)
            assert not failed and err is None
        elif op == "replace" and live:
            old = rng.sample(live, min(len(live), rng.randint(1, 3)))
            new = _entry(old[0].fp, rng.randint(0, 2), k, level=17)
            k += 1
            w.replace(new, [Removal(e.fp, e.ref.path) for e in old])
        elif op == "remove" and live:
            w.remove([Removal(e.fp, e.ref.path) for e in rng.sample(live, 1)])
        elif op == "compact":
            w.compact()
        elif op == "gc":
            chunks, names = w.garbage(now + rng.choice([0, 10, 100]), 50)
            assert not set(chunks) & _paths(w), "a chunk in service would be deleted"
            objects.delete_many([w.key(n) for n in names])
            w.chunks_deleted(chunks)
            w.objects_deleted(names)
        follower.sync()
        assert _paths(follower) == _paths(w), op
        assert _paths(_reader(objects)) == _paths(w), op
    assert w.records_lost == follower.records_lost == 0


def test_superseded_objects_are_never_read(tmp_path: Path) -> None:
    objects = LocalDir(tmp_path)
    w = TenantIndex("fake", objects, "t-fake", Writer())
    for i in range(4):
        w.add([_entry(1, 0, i)])
    assert len(objects.list("index/")) == 4
    assert w.compact() == 4
    counting = _CountingGets(tmp_path)
    r = TenantIndex("fake", counting, "t-fake")
    r.sync()
    assert _paths(r) == _paths(w) and len(_paths(r)) == 4
    assert len(counting.gets) == 1 and "/c-" in counting.gets[0]
    # Compacted again (with a new object): the first compaction's object and the small
    # ones it superseded are both superseded by the second, and still never read.
    w.add([_entry(1, 0, 9)])
    w.compact()
    counting.gets.clear()
    r2 = TenantIndex("fake", counting, "t-fake")
    r2.sync()
    assert _paths(r2) == _paths(w) and len(counting.gets) == 1


def _collect(w: TenantIndex, objects: LocalDir, now: float, delay: float) -> list[str]:
    chunks, names = w.garbage(now, delay)
    objects.delete_many([w.key(n) for n in names])
    w.chunks_deleted(chunks)
    assert not w.objects_deleted(names), "deleting what is out of service changed service"
    return chunks


def test_objects_out_of_service_are_deleted_only_after_the_delay(tmp_path: Path) -> None:
    objects = LocalDir(tmp_path)
    w = TenantIndex("fake", objects, "t-fake", Writer())
    a, b = _entry(1, 0, 1), _entry(1, 1, 2)  # two periods
    w.add([a])
    w.add([b])
    c = _entry(1, 0, 3, level=17)
    w.replace(c, [Removal(1, a.ref.path), Removal(1, b.ref.path)])
    w.compact()  # period 0 folds its two objects; period 1's names only a dead chunk
    assert _paths(w) == _paths(_reader(objects)) == {c.ref.path}
    t = time.time()
    assert w.garbage(t, 60) == ([], [])
    assert len(objects.list("index/")) == 5  # nothing deleted yet
    assert sorted(_collect(w, objects, t + 61, 60)) == sorted([a.ref.path, b.ref.path])
    assert len(objects.list("index/")) == 2  # the two compactions' objects
    # Once the chunks are gone, their "del" records say nothing any more: compaction
    # drops them, and an object left saying nothing goes after the delay too.
    for _ in range(3):
        w.compact()
        _collect(w, objects, time.time() + 61, 60)
    r = _reader(objects)
    assert _paths(r) == _paths(w) == {c.ref.path} and r.deleted() == set()
    assert len(objects.list("index/")) == 1


def test_an_unknown_record_kind_is_counted_not_ignored(tmp_path: Path) -> None:
    """A record kind this release does not know (a later release's tombstone) may say
    that lines must not be served: it is counted as lost and marks the index damaged,
    never skipped silently. The object's other records still count."""
    objects = LocalDir(tmp_path)
    e = _entry(1, 0, 1)
    header = {"op": "hdr", "v": 1, "tenant": "fake", "period": "2024-05-01", "writer": "x",
              "created": 1.0, "supersedes": []}
    tomb = {"op": "tombstone", "selector": '{s="1"}', "start": 0, "end": 10}
    objects.put("index/t-fake/2024-05-01/w-0000000001000-x-000000.idx",
                encode(header, [e.record(), tomb]))
    r = _reader(objects)
    assert r.records_lost == 1 and r.damaged
    assert _paths(r) == {e.ref.path}


def test_a_newer_object_version_is_damage() -> None:
    header = {"op": "hdr", "v": 2, "tenant": "fake", "period": "2024-05-01", "writer": "x",
              "created": 1.0, "supersedes": []}
    data = encode(header, [_entry(1, 0, 1).record()])
    d = decode(data, "x")
    assert d.header is None and d.lost == 1
    assert orjson.loads(data[HDR.size : HDR.size + HDR.unpack_from(data)[0]])["v"] == 2


# --- two stores on one object store -------------------------------------------------------

def _block(app: str, base: int, n: int, tag: str) -> EntryBlock:
    return EntryBlock.from_lines({"app": app}, np.arange(n, dtype=np.int64) + base,
                                 [f"{tag} {i}".encode() for i in range(n)])


def _lines(st: Store, app: str) -> list[bytes]:
    return sorted(ln for ref in st.series(["fake"], [Matcher("app", "=", app)], 0, 2**62)
                  for b in st.blocks(ref, 0, 2**62, "forward") for ln in b.lines())


def _chunks(st: Store, app: str) -> list[ChunkRef]:
    return [c for s in st.tenants["fake"].stream_list() if s.labels == {"app": app}
            for c in s.chunks]


@pytest.fixture
def two_stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    objects = LocalDir(tmp_path / "objects")
    a = Store(StoreConfig(data_dir=tmp_path / "a", compaction_enabled=False, index_sync_period=0,
                          retention_period=3600), objects=objects, compactor=NO_DELAY)
    b = Store(StoreConfig(data_dir=tmp_path / "b", compaction_enabled=False, index_sync_period=0.1),
              objects=objects)
    yield a, b
    b.close()
    a.close()


def test_another_store_serves_what_one_flushed_compacted_and_retired(two_stores) -> None:  # type: ignore[no-untyped-def]
    a, b = two_stores
    base = time.time_ns() - 600 * 10**9
    want: list[bytes] = []
    for k in range(3):
        blk = _block("x", base + k * 1000, 50, f"x{k}")
        a.push("fake", [blk]).result()
        a.flush_all()
        want += blk.lines()
    wait_for(lambda: _lines(b, "x") == sorted(want), "b to serve a's chunks")
    gen = b.generation

    a.compact(min_age_s=0)  # one chunk replaces three; one index object per period
    wait_for(lambda: len(_chunks(b, "x")) == 1, "b to see the compacted chunk")
    assert _lines(b, "x") == sorted(want)
    assert b.generation > gen  # its cached results of these ranges are stale

    old = time.time_ns() - 2 * 3600 * 10**9
    a.push("fake", [_block("old", old, 20, "old")]).result()
    a.flush_all()
    wait_for(lambda: len(_lines(b, "old")) == 20, "b to serve the old stream")
    assert a.apply_retention() == 1  # delete_delay 0: the chunk goes at once
    wait_for(lambda: _lines(b, "old") == [], "b to see the retention")
    a.compact()  # the superseded index objects go
    wait_for(lambda: b.tenants["fake"].index.object_count() ==
             a.tenants["fake"].index.object_count(), "b to forget the deleted objects")
    assert _lines(b, "x") == sorted(want)
    assert b.tenants["fake"].index_records_lost == 0


def test_a_store_lists_again_right_after_its_own_flush(tmp_path: Path) -> None:
    """With no periodic sync, a store still sees another's objects when it flushes."""
    objects = LocalDir(tmp_path / "objects")
    a = Store(StoreConfig(data_dir=tmp_path / "a", compaction_enabled=False, index_sync_period=0),
              objects=objects)
    b = Store(StoreConfig(data_dir=tmp_path / "b", compaction_enabled=False, index_sync_period=0,
                          index_relist_after_write=0), objects=objects)
    try:
        base = time.time_ns() - 600 * 10**9
        a.push("fake", [_block("x", base, 10, "from a")]).result()
        a.flush_all()
        assert _lines(b, "x") == []
        b.push("fake", [_block("y", base, 10, "from b")]).result()
        b.flush_all()
        assert len(_lines(b, "x")) == 10 and len(_lines(b, "y")) == 10
        reader = IndexReader(objects)
        reader.sync()
        assert {e.labels for e in reader.refs("t-fake")} == {'{app="x"}', '{app="y"}'}
        assert [e.labels for e in reader.refs("t-fake", [Matcher("app", "=", "y")])] == \
            ['{app="y"}']
    finally:
        b.close()
        a.close()


def test_a_chunk_deleted_under_a_stale_reader_is_a_warning(tmp_path: Path) -> None:
    """A reader that has not synced since a chunk was replaced and deleted (a delay
    shorter than its sync) finds it missing: its lines are left out of that answer with a
    warning, and it is counted; the chunk that replaced it is served after the sync."""
    objects = LocalDir(tmp_path / "objects")
    a = Store(StoreConfig(data_dir=tmp_path / "a", compaction_enabled=False, index_sync_period=0,
                          compaction_level=3), objects=objects, compactor=NO_DELAY)
    b = Store(StoreConfig(data_dir=tmp_path / "b", compaction_enabled=False, index_sync_period=0),
              objects=objects)
    try:
        base = time.time_ns() - 600 * 10**9
        for k in range(2):
            a.push("fake", [_block("x", base + k * 100, 10, f"x{k}")]).result()
            a.flush_all()
        b.sync_index()
        a.compact(min_age_s=0)
        a.compact(min_age_s=0)  # delete_delay 0: the replaced chunks go
        warnings: list[str] = []
        got = [ln for ref in b.series(["fake"], [], 0, 2**62)
               for blk in b.blocks(ref, 0, 2**62, "forward", warnings.append)
               for ln in blk.lines()]
        assert got == [] and len(warnings) == 2 and "missing" in warnings[0]
        assert b.tenants["fake"].chunks_quarantined == {"missing": 2}
        b.sync_index()
        assert len(_lines(b, "x")) == 20
    finally:
        b.close()
        a.close()


def test_an_index_object_gone_while_in_service_is_counted(tmp_path: Path) -> None:
    """An index object that disappears while it is live (deleted by hand, lost by the
    object store): the chunks it named leave service at the next sync, and its records
    are counted lost, with a warning."""
    objects = LocalDir(tmp_path)
    w = TenantIndex("fake", objects, "t-fake", Writer())
    w.add([_entry(1, 0, 1), _entry(1, 0, 2)])
    w.add([_entry(2, 0, 3)])
    r = _reader(objects)
    assert len(_paths(r)) == 3
    first = sorted(o.key for o in objects.list("index/"))[0]
    objects.delete(first)
    delta = r.sync()
    assert len(delta.removed) == 2 and len(_paths(r)) == 1
    assert r.records_lost == 2 and r.damaged


def test_an_object_written_after_the_listing_is_not_taken_for_gone(tmp_path: Path) -> None:
    """The sync thread lists, the flusher writes an object, then the listing is folded
    in: the new object is missing from the listing but is not gone (`listed_at`)."""
    objects = LocalDir(tmp_path)
    w = TenantIndex("fake", objects, "t-fake", Writer())
    w.add([_entry(1, 0, 1)])
    listed_at = w.step
    listing = objects.list(w.prefix)
    w.add([_entry(1, 0, 2)])
    assert not w.sync(listing, listed_at)
    assert len(_paths(w)) == 2 and w.records_lost == 0
