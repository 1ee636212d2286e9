"""The store in-process: chunk cutting, replay that skips flushed data, retention, format."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import ChunkError, Store, StoreConfig
from sluiceway.store._chunk import decode_chunk, encode_chunk
from sluiceway.store._store import tenant_dirname, tenant_from_dirname
from tests.inproc import wait_for


def _block(i: int, base: int, n: int = 10) -> EntryBlock:
    lines = [f"line {i}-{j} trace={i * 1000 + j:08x}".encode() for j in range(n)]
    return EntryBlock.from_lines({"app": "a"}, np.arange(n, dtype=np.int64) + base + i * 100,
                                 lines)


def _all(st: Store) -> list[bytes]:
    out: list[bytes] = []
    for ref in st.series(["fake"], [Matcher("app", "=", "a")], 0, 2**62):
        for b in st.blocks(ref, 0, 2**62, "forward"):
            out += b.lines()
    return out


def test_chunks_cut_by_size_and_replay_skips_what_is_flushed(tmp_path: Path) -> None:
    cfg = StoreConfig(data_dir=tmp_path, chunk_target_size=1500, flush_on_shutdown=False)
    st = Store(cfg)
    base = time.time_ns()
    for i in range(30):
        st.push("fake", [_block(i, base)]).result()
    wait_for(lambda: st.chunks_flushed >= 3, "heads cut by size to be flushed")  # not at stop
    before = _all(st)
    assert len(before) == 300
    st.close()  # heads not flushed: the WAL must bring them back, chunks must not double
    st = Store(cfg)
    assert _all(st) == before
    st.close()


def test_retention_deletes_whole_expired_chunks(tmp_path: Path) -> None:
    """Out of service at once; the files go `delete_delay` later (a reader elsewhere may
    still be reading them), and stay out of service across a restart meanwhile."""
    cfg = StoreConfig(data_dir=tmp_path, chunk_target_size=1000, retention_period=3600)
    st = Store(cfg)
    old = time.time_ns() - 2 * 3600 * 10**9
    for i in range(10):
        st.push("fake", [_block(i, old)]).result()
    st.flush_all()
    files = set(tmp_path.glob("tenants/*/chunks/*/*.chunk"))
    assert files
    assert st.apply_retention() == len(files)
    assert _all(st) == []
    assert set(tmp_path.glob("tenants/*/chunks/*/*.chunk")) == files
    st.close()
    st = Store(cfg)
    assert _all(st) == []
    assert st.collect_garbage(time.time() + st.delete_delay_s - 60) == 0
    assert st.collect_garbage(time.time() + st.delete_delay_s + 1) >= len(files)
    assert not list(tmp_path.glob("tenants/*/chunks/*/*.chunk"))
    st.close()
    assert _all(Store(StoreConfig(data_dir=tmp_path))) == []


def test_chunk_roundtrip_and_damage_detection() -> None:
    b = _block(1, 10**18, n=50)
    data, meta = encode_chunk(b)
    back = decode_chunk(data, b.labels)
    assert back.lines() == b.lines() and (back.ts == b.ts).all() and meta.n == 50
    bad = bytearray(data)
    bad[-5] ^= 0xFF
    with pytest.raises(ChunkError):
        decode_chunk(bytes(bad), b.labels)


def test_compaction_merges_recompresses_and_keeps_every_line(tmp_path: Path) -> None:
    cfg = StoreConfig(data_dir=tmp_path, chunk_target_size=2000, compaction_enabled=False,
                      compaction_level=15)
    st = Store(cfg)
    base = time.time_ns()
    for i in range(40):
        st.push("fake", [_block(i, base)]).result()
    st.flush_all()
    before = _all(st)
    old_files = set(tmp_path.glob("tenants/*/chunks/*/*.chunk"))
    assert len(old_files) > 3
    stats = st.compact(min_age_s=0)
    assert stats.chunks_in == len(old_files) and stats.chunks_out == 1
    assert stats.bytes_out < stats.bytes_in
    assert _all(st) == before
    st.compact(min_age_s=0)
    assert set(tmp_path.glob("tenants/*/chunks/*/*.chunk")) >= old_files  # delete_delay
    st.collect_garbage(time.time() + st.delete_delay_s + 1)
    assert not (set(tmp_path.glob("tenants/*/chunks/*/*.chunk")) & old_files)
    st.close()
    assert _all(Store(cfg)) == before  # the index objects say the compacted state


def test_drop_known_matches_a_brute_force_dedupe() -> None:
    """Exact duplicates (ts and line) against memory and within a push, nothing else."""
    import random

    from sluiceway.store import WalPos
    from sluiceway.store._stream import Stream

    rng = random.Random(7)

    def block(n: int, span: int, ordered: bool) -> EntryBlock:
        ts = [rng.randint(0, span) for _ in range(n)]
        lines = [rng.choice([b"a", b"b", b"c"]) for _ in range(n)]
        return EntryBlock.from_lines({"a": "b"}, np.array(sorted(ts) if ordered else ts,
                                                          dtype=np.int64), lines)

    for _ in range(300):
        s, held = Stream(1, {"a": "b"}), []
        for k in range(rng.randint(0, 4)):
            b = s.drop_known(block(rng.randint(1, 20), 40, True))
            if len(b):
                held += list(zip(b.ts.tolist(), b.lines(), strict=True))
                s.append(b, WalPos(1, k))
        new = block(rng.randint(1, 30), 50, False)
        seen, want = set(held), []
        for key in zip(new.ts.tolist(), new.lines(), strict=True):
            if key not in seen:
                seen.add(key)
                want.append(key)
        got = s.drop_known(new)
        assert list(zip(got.ts.tolist(), got.lines(), strict=True)) == want


def test_wal_group_survives_short_writes_and_replays_every_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A nearly full disk or a file size limit makes the kernel take part of a writev; the
    # writer must continue exactly where it stopped, inside a frame or between frames.
    from sluiceway.store import _wal

    real = os.writev
    monkeypatch.setattr(_wal.os, "writev",
                        lambda fd, bufs: real(fd, [bytes(b"".join(bufs)[:7])]))
    w = _wal.WalWriter(tmp_path)
    payloads = [f"record {i} ".encode() * (i + 1) for i in range(20)]
    futures = [w.submit(p) for p in payloads]
    positions = [f.result(10) for f in futures]
    w.close()
    replayed = list(_wal.replay(tmp_path))
    assert [p for _, p in replayed] == payloads
    assert [pos for pos, _ in replayed] == positions


def test_zeros_in_wal_and_index_are_damage_not_empty_records(tmp_path: Path) -> None:
    # A file system may leave zeros where a crash interrupted a write; (0, 0) reads as an
    # empty frame with a valid CRC32 (crc32(b"") == 0), which neither writer ever writes.
    from sluiceway.store import _wal

    cfg = StoreConfig(data_dir=tmp_path, compaction_enabled=False, flush_on_shutdown=False)
    st = Store(cfg)
    base = time.time_ns()
    for i in range(2):
        st.push("fake", [_block(i, base)]).result()
        st.flush_all()
    st.push("fake", [_block(2, base)]).result()  # stays in the WAL
    st.close()
    index = sorted(tmp_path.glob("tenants/index/t-fake/*/*.idx"))[0]
    data = index.read_bytes()
    first_end = 8 + int.from_bytes(data[:4], "little")  # the header
    index.write_bytes(data[:first_end] + bytes(4096) + data[first_end:] + bytes(4096))
    seg = max((tmp_path / "wal").glob("*.wal"))
    with open(seg, "ab") as f:
        f.write(bytes(4096))
    assert len(list(_wal.replay(tmp_path / "wal"))) == 1
    st = Store(cfg)
    assert len(_all(st)) == 30
    # The zeros inside and at the end: an index object is put whole, so zeros at its
    # end are damage too (in the WAL they are a torn tail, never acknowledged).
    assert st.tenants["fake"].index_records_lost == 2
    st.close()
TENANT_CHARS = "abcXYZ019_-.!*'()"


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 150).flatmap(lambda n: st.text(TENANT_CHARS, min_size=n, max_size=n)))
def test_tenant_directory_names_fit_and_map_back(tenant: str) -> None:
    """Every valid tenant id (Loki: up to 150 of these characters) gets a name of at most
    255 bytes that is never the raw id (unless plainly safe) and maps back to it alone."""
    name = tenant_dirname(tenant)
    assert len(name.encode()) <= 255
    assert "/" not in name and name not in (".", "..")
    assert name[:2] in ("t-", "x-", "b-")
    assert tenant_from_dirname(name) == tenant


def test_tenant_directory_names_of_short_ids_are_unchanged() -> None:
    """Data dirs from before base32 names keep their names (and so their data)."""
    assert tenant_dirname("team-a") == "t-team-a"
    assert tenant_dirname("a.b") == "x-" + b"a.b".hex()
    assert tenant_dirname("(" * 126) == "x-" + "28" * 126
    assert tenant_dirname("(" * 127).startswith("b-")


@pytest.mark.parametrize("name", ["t-..", "x-2F", "x-zz", "b-0", "b-" + "a" * 8, "t-a/b", "ab",
                                  "x-" + b"ok".hex()])
def test_directories_not_made_by_tenant_dirname_are_not_tenants(name: str) -> None:
    assert tenant_from_dirname(name) is None


def test_replay_finds_exactly_the_lines_a_chunk_holds() -> None:
    """At replay, a record's lines that a chunk holds already are dropped: runs found in
    the chunk are compared a run at a time (`found_in`), what is left line by line;
    together exactly the brute-force answer, whatever the times and lines."""
    import random

    from sluiceway.model import sort_dedupe
    from sluiceway.store._blocks import found_in
    from sluiceway.store._stream import HeadPiece, drop_known

    rng = random.Random(11)
    for _ in range(400):
        held_rows = [(rng.randint(0, 30), rng.choice([b"a", b"b", b"cc", b"ddd"]))
                     for _ in range(rng.randint(0, 25))]
        chunk = sort_dedupe(EntryBlock.from_lines(
            {"a": "b"}, np.array([t for t, _ in held_rows], dtype=np.int64),
            [line for _, line in held_rows]))
        rows = list(zip(chunk.ts.tolist(), chunk.lines(), strict=True))
        start = rng.randint(0, len(rows))
        new = rows[start : start + rng.randint(0, len(rows))]  # a run the chunk holds
        new += [(rng.randint(0, 35), rng.choice([b"a", b"b", b"e"]))
                for _ in range(rng.randint(0, 8))]
        if rng.random() < 0.5:
            rng.shuffle(new)
        if not new:
            continue
        block = EntryBlock.from_lines({"a": "b"}, np.array([t for t, _ in new], dtype=np.int64),
                                      [line for _, line in new])
        keep = ~found_in(block, chunk)
        assert all((int(block.ts[i]), block.line(i)) in set(rows)
                   for i in np.flatnonzero(~keep).tolist())  # only what the chunk holds
        rest = block.take(keep)
        pieces = [HeadPiece(chunk, int(chunk.ts[0]), int(chunk.ts[-1]))] if len(chunk) else []
        if len(rest):
            rest = drop_known(rest, pieces, int(chunk.ts[-1]) if len(chunk) else -1)
        seen, want = set(rows), []
        for key in new:
            if key not in seen:
                seen.add(key)
                want.append(key)
        assert list(zip(rest.ts.tolist(), rest.lines(), strict=True)) == want
