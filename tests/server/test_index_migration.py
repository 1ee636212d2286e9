"""A version-1 data dir (an index log per tenant, in the data dir) opens in this release:
its logs become index objects with a log line, the marker says version 3, and every line
comes back exactly once, at this start and the next ones. A version-2 dir (chunk format
2, index logs still) is migrated the same way.

The dir is built here the way the version-1 store left it: chunk files written by the
chunk encoder (format 1, unchanged), index logs of framed JSON records as `IndexLog`
appended them (with the WAL positions of the oldest records), the WAL written by the
ingest log. It holds what a real one can: chunks a compaction replaced ("del" records;
one replaced file still on disk, as a crash before the compactor's next pass left it),
a chunk retention deleted, a torn tail, a damaged record, lines only in the WAL and lines
in both the WAL and a chunk. (tests/data/store-v1, written by the version-1 release
itself, is read by tests/server/test_migration.py once it is on main.)"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from sluiceway.model import EntryBlock, PushRecord, fingerprint, format_labels
from sluiceway.store import FileWal, IndexReader, LocalDir, Store, StoreConfig
from sluiceway.store._chunk import encode_chunk
from sluiceway.store._index import TenantIndex, Writer
from sluiceway.store._indexlog import migrate
from sluiceway.store._store import tenant_dirname
from tests.procs import ServerProcess

_FRAME = struct.Struct("<II")
DAY = 86_400 * 10**9
T0 = 1_709_251_200 * 10**9  # 2024-03-01T00:00:00Z
LONG = "long.tenant-" + "x" * 138  # 150 characters: a `b-` directory of 255 bytes
TENANTS = {"acme": "t-acme", "team.eu": "x-" + b"team.eu".hex(), LONG: tenant_dirname(LONG)}
APPS = ("api", "web")


def _frame(rec: dict[str, Any]) -> bytes:
    payload = orjson.dumps(rec)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _block(labels: dict[str, str], lo: int, hi: int) -> EntryBlock:
    """Lines lo..hi-1 of a stream, an hour apart from T0 (so they span days)."""
    idx = np.arange(lo, hi, dtype=np.int64)
    return EntryBlock.from_lines(labels, T0 + idx * 3_600 * 10**9 + 7,
                                 [f"{labels['app']} line {i}".encode() for i in range(lo, hi)])


def _v1_chunk(root: Path, labels: dict[str, str], lo: int, hi: int, level: int,
              keep: bool) -> dict[str, Any]:
    """A chunk file of lines lo..hi-1 (unless `keep` is false: deleted since) and the
    index record the version-1 store appended for it."""
    fp = fingerprint(labels)
    block = _block(labels, lo, hi)
    data, meta = encode_chunk(block, level)
    day = time.strftime("%Y-%m-%d", time.gmtime(meta.mint // 10**9))
    rel = f"chunks/{day}/{fp:016x}-{meta.mint}-{lo:04d}{hi:04d}.chunk"
    if keep:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {"op": "add", "fp": fp, "labels": format_labels(labels), "path": rel,
            "mint": meta.mint, "maxt": meta.maxt, "n": meta.n, "raw": meta.raw_bytes,
            "size": meta.size, "lvl": level, "at": 1_709_300_000.0 + lo}


def build_v1(data: Path, version: int = 1) -> dict[str, dict[str, list[str]]]:
    """A version-1 data dir (its marker says `version`); the lines each tenant's streams
    hold, by labels."""
    expected: dict[str, dict[str, list[str]]] = {}
    (data / "wal").mkdir(parents=True)
    (data / "FORMAT").write_bytes(orjson.dumps({"format": "sluiceway-store",
                                                "version": version}))
    wal = FileWal(data / "wal")
    for tenant, dirname in TENANTS.items():
        root = data / "tenants" / dirname
        frames: list[bytes] = []
        for app in APPS:
            labels = {"app": app, "tenant": tenant}
            fp, text = fingerprint(labels), format_labels(labels)
            # retention took `old`; compaction merged c1 (deleted) and c2 (its file was
            # left: no pass after) into c12
            old = {**_v1_chunk(root, labels, -40, -30, 1, False), "seg": 1, "off": 0}
            c1 = {**_v1_chunk(root, labels, 0, 20, 1, False), "seg": 1, "off": 100}
            c2 = _v1_chunk(root, labels, 20, 40, 1, True)
            c12 = _v1_chunk(root, labels, 0, 40, 17, True)
            c3 = _v1_chunk(root, labels, 40, 60, 1, True)
            frames += [_frame(old), _frame(c1), _frame(c2), _frame(c3),
                       _frame({"op": "del", "fp": fp, "path": old["path"]}),
                       _frame(c12), _frame({"op": "del", "fp": fp, "path": c1["path"]}),
                       _frame({"op": "del", "fp": fp, "path": c2["path"]})]
            # The WAL: 50..59 again (in c3 already), 60..79 in no chunk.
            wal.append(PushRecord(tenant, [_block(labels, 50, 80)])).result()
            expected.setdefault(tenant, {})[text] = [f"{app} line {i}" for i in range(80)]
        log = b"".join(frames)
        if tenant == "team.eu":
            # A damaged record: the first stream's c3 (its chunk is taken back).
            off = sum(len(f) for f in frames[:3])
            log = log[:off + 20] + bytes([log[off + 20] ^ 0xFF]) + log[off + 21:]
        else:
            log += _FRAME.pack(200, 0xDEADBEEF) + b'{"op":"add","fp":1,"lab'  # torn tail
        (root / "index.log").write_bytes(log)
    wal.close()
    return expected


def _query(srv: ServerProcess, tenant: str, selector: str) -> list[str]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
        "query": selector, "start": str(T0 - 2 * 86_400 * 10**9),
        "end": str(T0 + 10 * 86_400 * 10**9), "limit": "5000", "direction": "forward"},
        headers={"X-Scope-OrgID": tenant})
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body.get("warnings"), body["warnings"]
    return [v[1] for s in body["data"]["result"] for v in s["values"]]


def _check(srv: ServerProcess, expected: dict[str, dict[str, list[str]]]) -> None:
    for tenant, streams in expected.items():
        for labels, want in streams.items():
            got = _query(srv, tenant, labels)
            assert sorted(got) == sorted(want), (tenant, labels, len(got), len(want))


def test_a_version_1_data_dir_is_migrated_with_every_line_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    expected = build_v1(data)
    leftover = next((data / "tenants" / "t-acme").glob("chunks/*/*-00200040.chunk"))
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  compaction_interval: 300ms\n")
    srv = ServerProcess(data, config=cfg).start()
    try:
        _check(srv, expected)
        log = srv.log()
        assert "format version 1 raised to 3: its chunks are read as they are, new chunks " \
               "are written in chunk format 2; the index logs of 3 tenants are index " \
               "objects now" in log
        assert "t-acme/index.log: torn record at offset" in log
        assert "damaged record at offset" in log and "is taken back" in log
        assert orjson.loads((data / "FORMAT").read_bytes())["version"] == 3
        assert not list(data.glob("tenants/*/index.log"))
        reader = IndexReader(LocalDir(data / "tenants"))
        reader.sync()
        assert reader.tenant_dirs() == sorted(TENANTS.values())
        # The compactor's first pass deletes what the version-1 store took out of
        # service and left on disk ("del" records are past any delay).
        deadline = time.monotonic() + 60
        while leftover.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not leftover.exists()
        metrics = httpx.get(f"{srv.url}/metrics", timeout=30).text
        assert 'sluiceway_index_objects{tenant="acme"}' in metrics
        deleted = next(float(ln.split()[-1]) for ln in metrics.splitlines()
                       if ln.startswith("sluiceway_index_garbage_deleted_total "))
        assert deleted >= 1
        srv.stop()
        srv.start()
        _check(srv, expected)
        srv.stop()
        assert srv.log().count("raised to 3") == 1
        assert "Traceback" not in srv.log() and " ERROR " not in srv.log()
    finally:
        srv.stop()


def test_an_interrupted_migration_runs_again_to_the_same_objects(tmp_path: Path) -> None:
    """A start that put the migrated objects and died before it removed the logs: the
    next start migrates again, to the same keys and bytes, and nothing is doubled."""
    data = tmp_path / "data"
    expected = build_v1(data)
    objects = LocalDir(data / "tenants")
    for tenant, dirname in TENANTS.items():
        m = migrate(data / "tenants" / dirname,
                    TenantIndex(tenant, objects, dirname, Writer()))
        assert m is not None and (data / "tenants" / dirname / "index.log").exists()
    first = {o.key: objects.get(o.key) for o in objects.list("index/")}
    assert first and all("/m-0000000000000-v1-000000.idx" in k for k in first)
    st = Store(StoreConfig(data_dir=data, compaction_enabled=False, index_sync_period=0))
    try:
        assert {k: objects.get(k) for k in first} == first
        for tenant, streams in expected.items():
            for labels, want in streams.items():
                app = labels.split('app="')[1].split('"')[0]
                refs = [r for r in st.series([tenant], [], 0, 2**62)
                        if r.labels.get("app") == app]
                got = [ln.decode() for r in refs
                       for b in st.blocks(r, 0, 2**62, "forward") for ln in b.lines()]
                assert sorted(got) == sorted(want), (tenant, labels)
        assert st.tenants["team.eu"].index_records_lost == 1
        assert st.tenants["acme"].index_records_lost == 0  # a torn tail is not counted
    finally:
        st.close()


def test_a_version_2_data_dir_is_migrated_too(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Version 2 (chunk format 2, index logs): the logs become objects, the marker 3."""
    data = tmp_path / "data"
    expected = build_v1(data, version=2)
    caplog.set_level("INFO", "sluiceway.store")
    st = Store(StoreConfig(data_dir=data, compaction_enabled=False, index_sync_period=0))
    try:
        n = sum(len(v) for streams in expected.values() for v in streams.values())
        got = [(r.tenant, ln) for r in st.series(list(TENANTS), [], 0, 2**62)
               for b in st.blocks(r, 0, 2**62, "forward") for ln in b.lines()]
        assert len(got) == len(set(got)) == n
    finally:
        st.close()
    assert "format version 2 raised to 3: the index logs of 3 tenants are index objects " \
           "now" in caplog.text
    assert orjson.loads((data / "FORMAT").read_bytes())["version"] == 3
    assert not list(data.glob("tenants/*/index.log"))


@pytest.mark.parametrize("version", [0, 4])
def test_a_data_dir_of_an_unknown_version_is_refused(tmp_path: Path, version: int) -> None:
    (tmp_path / "FORMAT").write_bytes(orjson.dumps({"format": "sluiceway-store",
                                                    "version": version}))
    from sluiceway.store import StoreError

    with pytest.raises(StoreError, match=f"format version {version}; this Sluiceway reads "
                                         "sluiceway-store versions 1, 2, 3"):
        Store(StoreConfig(data_dir=tmp_path))
