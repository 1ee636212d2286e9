"""`model.PushRecord`: a versioned encoding that decodes without copying a line, subsets
of streams that are records themselves, and WALs written before records had a version
(version 0) that still replay."""

from __future__ import annotations

import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.model import EntryBlock, Matcher, PushRecord, RecordError, format_labels
from sluiceway.store import Store, StoreConfig
from tests.sourcescan import parse_source

_U32 = struct.Struct("<I")
V0_DATA = Path(__file__).resolve().parents[1] / "data" / "wal_v0" / "data"


def encode_v0(tenant: str, blocks: list[EntryBlock]) -> bytes:
    """The WAL payload as the release before versioned records wrote it (commit 2113499,
    `store/_record.py: encode_record`), kept to make version 0 records."""
    def put_str(out: list[bytes], s: bytes) -> None:
        out.append(_U32.pack(len(s)))
        out.append(s)

    out: list[bytes] = []
    put_str(out, tenant.encode())
    out.append(_U32.pack(len(blocks)))
    for b in blocks:
        put_str(out, format_labels(b.labels).encode())
        out.append(_U32.pack(len(b)))
        out.append(b.ts.astype("<i8", copy=False).tobytes())
        out.append(np.diff(b.offsets).astype("<u4").tobytes())
        out.append(b.blob[int(b.offsets[0]) : int(b.offsets[-1])])
        put_str(out, orjson.dumps(b.metadata) if b.metadata is not None else b"")
    return b"".join(out)


def _entries(b: EntryBlock) -> tuple[dict[str, str], list[int], list[bytes], object]:
    return b.labels, b.ts.tolist(), b.lines(), b.metadata


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_block = st.builds(
    lambda labels, rows, with_md: EntryBlock.from_lines(
        labels, np.array([t for t, _, _ in rows], dtype=np.int64),
        [line.encode() for _, line, _ in rows],
        [md for _, _, md in rows] if with_md else None),
    st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), _text,
                    min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(-(2**62), 2**62), _text,
                       st.none() | st.dictionaries(st.sampled_from("xyz"), _text, max_size=2)),
             max_size=6),
    st.booleans())
_blocks = st.lists(_block, max_size=5)
_tenant = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(_tenant, _blocks)
def test_a_record_decodes_to_what_was_encoded_without_copying_a_line(
        tenant: str, blocks: list[EntryBlock]) -> None:
    payload = PushRecord(tenant, blocks).encode()
    back = PushRecord.decode(payload)
    assert back.tenant == tenant
    assert [_entries(b) for b in back.blocks] == [_entries(b) for b in blocks]
    assert all(b.blob is payload for b in back.blocks)  # lines stay in the record's bytes
    assert back.encode() is payload and back.crc32 == zlib.crc32(payload)


@settings(max_examples=100, deadline=None)
@given(_tenant, _blocks, st.data())
def test_any_subset_of_streams_is_a_record(tenant: str, blocks: list[EntryBlock],
                                           data: st.DataObject) -> None:
    keep = data.draw(st.lists(st.integers(0, max(0, len(blocks) - 1)), max_size=len(blocks))
                     if blocks else st.just([]))
    whole = PushRecord.decode(PushRecord(tenant, blocks).encode())
    part = whole.subset(keep)
    # The same bytes as a record made of those streams alone, without encoding a line again.
    assert part.encode() == PushRecord(tenant, [blocks[i] for i in keep]).encode()
    back = PushRecord.decode(part.encode())
    assert [_entries(b) for b in back.blocks] == [_entries(blocks[i]) for i in keep]


@settings(max_examples=100, deadline=None)
@given(_tenant, _blocks)
def test_version_0_records_still_decode(tenant: str, blocks: list[EntryBlock]) -> None:
    back = PushRecord.decode(encode_v0(tenant, blocks))
    assert back.tenant == tenant
    assert [_entries(b) for b in back.blocks] == [_entries(b) for b in blocks]
    assert PushRecord.decode(back.encode()).tenant == tenant  # re-encoded as version 1


def test_other_versions_and_cut_records_are_record_errors() -> None:
    block = EntryBlock.from_lines({"a": "b"}, np.arange(3, dtype=np.int64), [b"x", b"y", b"z"])
    payload = PushRecord("t", [block]).encode()
    assert payload[:4] == b"SLR\x01"
    with pytest.raises(RecordError, match="version 2"):
        PushRecord.decode(b"SLR\x02" + payload[4:])
    for cut in (5, len(payload) // 2, len(payload) - 1):
        with pytest.raises(RecordError):
            PushRecord.decode(payload[:cut])
    with pytest.raises(RecordError):
        PushRecord.decode(payload + b"\0")


def _frame(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def _lines(st_: Store, tenant: str, job: str) -> list[bytes]:
    out: list[bytes] = []
    for ref in st_.series([tenant], [Matcher("job", "=", job)], 0, 2**62):
        for b in st_.blocks(ref, 0, 2**62, "forward"):
            out += b.lines()
    return out


def test_a_wal_of_version_0_records_replays(tmp_path: Path) -> None:
    """A WAL segment as the release before wrote it: its records are applied at start."""
    base = time.time_ns()
    blocks = [EntryBlock.from_lines({"job": f"j{k}"}, np.arange(4, dtype=np.int64) + base,
                                    [f"j{k} line {i}".encode() for i in range(4)])
              for k in range(3)]
    wal = tmp_path / "wal"
    wal.mkdir()
    (wal / "00000001.wal").write_bytes(_frame(encode_v0("fake", blocks[:2]))
                                       + _frame(encode_v0("other", blocks[2:])))
    cfg = StoreConfig(data_dir=tmp_path, compaction_enabled=False)
    st_ = Store(cfg)
    try:
        assert st_.replayed_records == 2
        assert _lines(st_, "fake", "j0") == [f"j0 line {i}".encode() for i in range(4)]
        assert _lines(st_, "fake", "j1") == [f"j1 line {i}".encode() for i in range(4)]
        assert _lines(st_, "other", "j2") == [f"j2 line {i}".encode() for i in range(4)]
    finally:
        st_.close()  # flushes; the old segment is released with the rest
    assert not [p for p in wal.glob("*.wal") if p.stat().st_size]
    st_ = Store(cfg)
    try:
        assert st_.replayed_records == 0
        assert len(_lines(st_, "fake", "j0")) == 4
    finally:
        st_.close()


def test_a_data_dir_of_the_release_before_opens_with_every_line_once(tmp_path: Path) -> None:
    """Committed test data (tests/data/wal_v0/make.py): a version 0 WAL whose first record
    is in a chunk for one stream (the index names its WAL position) and only in the WAL for
    the other. Every line comes back once, and the index counts each once."""
    data = tmp_path / "data"
    shutil.copytree(V0_DATA, data)
    cfg = StoreConfig(data_dir=data, compaction_enabled=False)
    for round_ in range(2):
        st_ = Store(cfg)
        try:
            big, small = _lines(st_, "fake", "big"), _lines(st_, "fake", "small")
            assert len(big) == len(set(big)) == 40
            assert len(small) == len(set(small)) == 5
            stats = st_.index_stats(["fake"], [Matcher("job", "=~", ".+")], 0, 2**62)
            assert (stats["streams"], stats["entries"]) == (2, 45)
            if round_ == 0:
                assert st_.replayed_records == 2
                assert st_.heads.replay_duplicates == 40  # big's lines, found in its chunk
            else:
                assert st_.replayed_records == 0  # the first close flushed and released
        finally:
            st_.close()
    assert (data / "checkpoint.json").exists()
    assert not [p for p in (data / "wal").glob("*.wal") if p.stat().st_size]


def test_the_distributor_imports_nothing_of_the_store() -> None:
    """Validation is stateless (it runs in the ingest workers, and in a cluster on any
    node): the distributor module may not reach the store, public or private."""
    import ast

    import sluiceway.server._distributor as dist

    tree = parse_source(dist.__file__)
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if m.startswith("sluiceway.store")]


def test_validate_makes_the_record_of_what_passes() -> None:
    """`validate(tenant, blocks, limits)`: a PushRecord of the tenant holding the lines
    that pass (one block per stream), and the refusals; it round-trips through its
    encoding as the workers send it."""
    from sluiceway.server import load_config
    from sluiceway.server._distributor import Prepared, validate

    limits = load_config(None, {"limits.max_line_size": 10}).limits
    now = time.time_ns()
    blocks = [EntryBlock.from_lines({"job": "a"}, np.array([now, now + 1], dtype=np.int64),
                                    [b"short", b"far too long a line"]),
              EntryBlock.from_lines({"job": "b"}, np.array([now], dtype=np.int64), [b"ok"])]
    record, rej = validate("team", blocks, limits, now)
    assert isinstance(record, PushRecord) and record.tenant == "team"
    assert [(b.labels, b.lines()) for b in record.blocks] == [
        ({"job": "a"}, [b"short"]), ({"job": "b"}, [b"ok"])]
    assert dict(rej.counts) == {"line_too_long": 1} and record.lines == 2
    back = Prepared.of(record, rej).record()
    assert back.tenant == "team" and [b.lines() for b in back.blocks] == [[b"short"], [b"ok"]]
