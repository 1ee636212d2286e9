"""The store keeps every chunk in its `ObjectStore`, and nowhere else.

The store is given a `LocalDir` rooted outside its data dir: every chunk write (flush,
compaction), read, delete (compaction, retention), quarantine move and recovery, and
every index object, must then happen in that object store, and the data dir keeps only
what is not an object store concern (WAL, checkpoint, FORMAT, LOCK).
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

import numpy as np

from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import LocalDir, Store, StoreConfig
from sluiceway.store._chunk import encode_chunk
from sluiceway.store._chunkfmt import decode_chunk


def _block(i: int, base: int, app: str = "a", n: int = 10) -> EntryBlock:
    lines = [f"{app} line {i}-{j} trace={i * 1000 + j:08x}".encode() for j in range(n)]
    return EntryBlock.from_lines({"app": app}, np.arange(n, dtype=np.int64) + base + i * 100,
                                 lines)


def _lines(st: Store, app: str = "a", warn: list[str] | None = None) -> list[bytes]:
    out: list[bytes] = []
    for ref in st.series(["fake"], [Matcher("app", "=", app)], 0, 2**62):
        for b in st.blocks(ref, 0, 2**62, "forward", warn.append if warn is not None else None):
            out += b.lines()
    return out


def _chunk_keys(objects: LocalDir, under: str = "t-fake/chunks/") -> list[str]:
    return [o.key for o in objects.list(under) if o.key.endswith(".chunk")]


def _files_in_data_dir(data: Path) -> list[str]:
    return sorted(p.relative_to(data).as_posix() for p in data.rglob("*")
                  if p.is_file() and ("/chunks/" in f"/{p.relative_to(data).as_posix()}"
                                      or p.suffix in (".idx", ".log")))


def _index_keys(objects: LocalDir) -> list[str]:
    return [o.key for o in objects.list("index/")]


def test_flush_compaction_retention_and_reads_go_through_the_object_store(
        tmp_path: Path) -> None:
    data, objects = tmp_path / "data", LocalDir(tmp_path / "objects")
    cfg = StoreConfig(data_dir=data, chunk_target_size=1500, compaction_enabled=False,
                      compaction_level=15, retention_period=3600)
    st = Store(cfg, objects=objects)
    base = time.time_ns()
    for i in range(30):
        st.push("fake", [_block(i, base)]).result()
    st.flush_all()
    flushed = _chunk_keys(objects)
    assert len(flushed) > 3
    assert all(k.startswith("t-fake/chunks/") for k in flushed)
    assert _files_in_data_dir(data) == []  # no chunk or index file in the data dir
    assert _index_keys(objects) and all(k.startswith("index/t-fake/")
                                        for k in _index_keys(objects))
    before = _lines(st)
    assert len(before) == 300

    st.compact(min_age_s=0)
    st.collect_garbage(time.time() + st.delete_delay_s + 1)  # the replaced chunks go
    compacted = _chunk_keys(objects)
    assert len(compacted) == 1 and not set(compacted) & set(flushed)
    assert _lines(st) == before
    st.close()

    st = Store(cfg, objects=objects)  # a cold cache: every chunk is read from the objects
    assert _lines(st) == before
    old = time.time_ns() - 2 * 3600 * 10**9
    for i in range(5):
        st.push("fake", [_block(i, old, app="old")]).result()
    st.flush_all()
    assert len(_chunk_keys(objects)) > 1
    assert st.apply_retention() >= 1
    st.collect_garbage(time.time() + st.delete_delay_s + 1)
    assert _chunk_keys(objects) == compacted
    assert _lines(st, "old") == []
    st.close()
    assert _files_in_data_dir(data) == []


def test_a_damaged_chunk_is_quarantined_inside_the_object_store(tmp_path: Path) -> None:
    data, objects = tmp_path / "data", LocalDir(tmp_path / "objects")
    cfg = StoreConfig(data_dir=data, chunk_target_size=1500, compaction_enabled=False)
    st = Store(cfg, objects=objects)
    base = time.time_ns()
    for i in range(10):
        st.push("fake", [_block(i, base)]).result()
    st.flush_all()
    st.close()
    keys = _chunk_keys(objects)
    bad = keys[0]
    objects.put(bad, b"SLWC not a chunk any more")
    st = Store(cfg, objects=objects)
    warnings: list[str] = []
    lines = _lines(st, warn=warnings)
    assert 0 < len(lines) < 100 and len(warnings) == 1
    assert bad not in _chunk_keys(objects)
    moved = bad.replace("t-fake/", "t-fake/quarantine/corrupt/", 1)
    assert objects.get(moved) == b"SLWC not a chunk any more"
    st.close()
    assert _files_in_data_dir(data) == []


def _as_format_1(objects: LocalDir, keys: list[str]) -> None:
    """Rewrite chunks as an older release wrote them (format 1: no tenant or labels)."""
    for k in keys:
        block = decode_chunk(objects.get(k), {})
        objects.put(k, encode_chunk(block, 1)[0])


def _lose_the_index(tmp_path: Path) -> tuple[StoreConfig, LocalDir, list[str], list[bytes],
                                             int]:
    """Ten flushed chunks of one stream, then every index object deleted."""
    objects = LocalDir(tmp_path / "objects")
    cfg = StoreConfig(data_dir=tmp_path / "data", chunk_target_size=1500, compaction_enabled=False)
    st = Store(cfg, objects=objects)
    base = time.time_ns()
    for i in range(10):
        st.push("fake", [_block(i, base)]).result()
    st.flush_all()
    before = _lines(st)
    st.close()
    keys = _chunk_keys(objects)
    objects.delete_many(_index_keys(objects))
    return cfg, objects, keys, before, base


def test_chunks_of_a_lost_index_come_back_from_their_footers(tmp_path: Path) -> None:
    """The index is gone and no record or WAL names the stream: a format-2 chunk's footer
    names its tenant and labels, so every chunk is taken back at once. A chunk whose
    footer's labels are not those of the fingerprint in its name (a file renamed or copied
    from elsewhere) is not trusted: it waits in the quarantine."""
    cfg, objects, keys, before, base = _lose_the_index(tmp_path)
    # One chunk under another stream's fingerprint: its footer does not match its name.
    moved = keys[0].replace(keys[0].rsplit("/", 1)[1][:16], "00000000deadbeef")
    objects.put(moved, objects.get(keys[0]))
    objects.delete(keys[0])

    st = Store(cfg, objects=objects)
    got = _lines(st)
    assert sorted(got + decode_chunk(objects.get(
        moved.replace("t-fake/", "t-fake/quarantine/unindexed/", 1)), {}).lines()) == \
        sorted(before)
    assert sorted(_chunk_keys(objects)) == sorted(keys[1:])
    assert st.tenants["fake"].chunks_quarantined == {"unindexed": 1}
    assert st.tenants["fake"].chunks_readded == len(keys) - 1
    st.close()


def test_chunks_of_a_lost_index_wait_in_the_object_store_and_come_back(tmp_path: Path) -> None:
    """The index is gone and no record names the stream of format-1 chunks (an older
    release's, without labels in them): they move to quarantine/unindexed/ in the object
    store; once a push makes the stream known again, the next start takes them back."""
    cfg, objects, keys, before, base = _lose_the_index(tmp_path)
    _as_format_1(objects, keys)

    st = Store(cfg, objects=objects)
    assert _lines(st) == []
    assert _chunk_keys(objects) == []
    assert _chunk_keys(objects, "t-fake/quarantine/unindexed/chunks/") == [
        k.replace("t-fake/", "t-fake/quarantine/unindexed/", 1) for k in keys]
    st.push("fake", [_block(99, base)]).result()  # the stream is known again (WAL)
    st.close()

    st = Store(cfg, objects=objects)
    assert sorted(_lines(st)) == sorted(before + _block(99, base).lines())
    assert set(keys) <= set(_chunk_keys(objects))
    assert _chunk_keys(objects, "t-fake/quarantine/") == []
    st.close()


def test_writes_a_crash_interrupted_are_cleaned_at_start(tmp_path: Path) -> None:
    data, objects = tmp_path / "data", LocalDir(tmp_path / "objects")
    cfg = StoreConfig(data_dir=data, compaction_enabled=False)
    st = Store(cfg, objects=objects)
    st.push("fake", [_block(0, time.time_ns())]).result()
    st.flush_all()
    st.close()
    key = _chunk_keys(objects)[0]
    leftover = Path(objects.path(key) + ".0badf00d.tmp")
    leftover.write_bytes(b"half a chunk")
    other = tmp_path / "objects" / "t-fake" / "quarantine" / "corrupt" / "x.1234abcd.tmp"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"half a copy")
    st = Store(cfg, objects=objects)
    assert not leftover.exists() and not other.exists()
    assert len(_lines(st)) == 10
    st.close()


class _EIOOnGet(LocalDir):
    """A LocalDir whose disk fails to read one object (an I/O error, not a missing one):
    fault injection for a case a test cannot make a real disk produce."""

    def __init__(self, root: Path, bad: str) -> None:
        super().__init__(root)
        self.bad = bad

    def get(self, key: str) -> bytes:
        if key == self.bad:
            raise OSError(errno.EIO, "Input/output error", key)
        return super().get(key)


def test_an_unreadable_chunk_of_a_lost_index_is_counted_not_lost_silently(
        tmp_path: Path) -> None:
    """A chunk the damaged index no longer names and whose bytes cannot be read cannot be
    copied into the quarantine: it stays where it is, and is counted and logged."""
    data = tmp_path / "data"
    cfg = StoreConfig(data_dir=data, chunk_target_size=1500, compaction_enabled=False)
    st = Store(cfg, objects=LocalDir(tmp_path / "objects"))
    for i in range(10):
        st.push("fake", [_block(i, time.time_ns())]).result()
    st.flush_all()
    st.close()
    LocalDir(tmp_path / "objects").delete_many(_index_keys(LocalDir(tmp_path / "objects")))
    keys = _chunk_keys(LocalDir(tmp_path / "objects"))
    objects = _EIOOnGet(tmp_path / "objects", keys[0])
    st = Store(cfg, objects=objects)
    assert st.tenants["fake"].chunks_quarantined == {"unreadable": 1}
    assert st.tenants["fake"].chunks_readded == len(keys) - 1  # from their footers
    assert sorted(_chunk_keys(objects)) == sorted(keys)  # the unreadable one left in place
    st.close()
