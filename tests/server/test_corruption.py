"""Damaged files on disk lose only what is damaged, say so in the log and in a counter, and
never take down a stream, a tenant or the compactor. Real server processes, real SIGKILLs."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from sluiceway.store import IndexReader, LocalDir
from sluiceway.store._chunk import encode_chunk
from sluiceway.store._chunkfmt import decode_chunk
from tests.procs import REPO, ServerProcess

_FRAME = struct.Struct("<II")  # u32 payload length | u32 CRC32 (WAL and index objects)
_CHUNK_HEADER = 40  # magic .. CRC32 of a chunk file; the zstd frame follows


def _frames(path: Path) -> list[tuple[int, bytes]]:
    """(offset, payload) of every frame; asserts the file holds nothing but whole frames."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        payload = data[pos + 8 : pos + 8 + length]
        assert len(payload) == length and zlib.crc32(payload) == crc, f"damage at {pos}"
        out.append((pos, payload))
        pos += 8 + length
    return out


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ mask]))


def _push(srv: ServerProcess, labels: dict[str, str], lines: list[str], t0: int,
          tenant: str = "fake") -> None:
    body = orjson.dumps({"streams": [{"stream": labels, "values": [
        [str(t0 + i), line] for i, line in enumerate(lines)]}]})
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body, timeout=30, headers={
        "Content-Type": "application/json", "X-Scope-OrgID": tenant})
    assert r.status_code == 204, r.text


def _flush(srv: ServerProcess) -> None:
    assert httpx.post(f"{srv.url}/flush", timeout=60).status_code == 204


def _query(srv: ServerProcess, selector: str, tenant: str = "fake") -> tuple[list[str], dict]:
    """Every line of `selector` (forward, paging), and the last answer's JSON."""
    lines: list[str] = []
    start = time.time_ns() - 3 * 3600 * 10**9
    while True:
        r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
            "query": selector, "start": str(start), "end": str(time.time_ns() + 10**10),
            "limit": "5000", "direction": "forward"}, headers={"X-Scope-OrgID": tenant})
        assert r.status_code == 200, r.text
        body = r.json()
        values = [v for s in body["data"]["result"] for v in s["values"]]
        lines += [v[1] for v in values]
        if len(values) < 5000:
            return lines, body
        start = max(int(v[0]) for v in values) + 1


def _metric(srv: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{srv.url}/metrics", timeout=10).text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def _lines(tag: str, n: int) -> list[str]:
    return [f"{tag} {i:05d} " + "v" * 40 for i in range(n)]


# --- the tenant's index objects ---------------------------------------------------------------

def _index_objects(data: Path, tenant: str = "fake") -> list[Path]:
    """The tenant's index objects, oldest first."""
    return sorted((data / "tenants" / "index" / f"t-{tenant}").glob("*/*.idx"),
                  key=lambda p: p.name.split("-")[1:])


def _live_adds(data: Path, tenant: str = "fake") -> dict[str, dict]:
    """Chunk path -> "add" record of every chunk the tenant's index names now."""
    reader = IndexReader(LocalDir(data / "tenants"))
    reader.sync()
    return {e.ref.path: e.record() for e in reader.refs(f"t-{tenant}")}


def test_damaged_index_records_are_skipped_and_their_chunks_re_added(tmp_path: Path) -> None:
    """One damaged byte each in three index records (payload, length, CRC): the reader
    resynchronises after each, and the chunks they named come back when the stream's labels
    are known from other index records or from the WAL; a chunk whose labels are known from
    nowhere (b's, rewritten as format 1, an older release's chunk without labels in its
    footer) is counted, logged and set aside, and comes back once its stream is seen
    again."""
    data = tmp_path / "data"
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  compaction_enabled: false\n")
    srv = ServerProcess(data, config=cfg).start()
    t0 = time.time_ns() - 1800 * 10**9
    a = [_lines(f"a{k}", 100) for k in range(3)]
    b, c, c2 = _lines("b", 100), _lines("c", 100), _lines("c2", 100)
    _push(srv, {"job": "a"}, a[0], t0)
    _push(srv, {"job": "b"}, b, t0)
    _flush(srv)  # an object: add a0, add b
    _push(srv, {"job": "a"}, a[1], t0 + 10**9)
    _flush(srv)  # add a1
    _push(srv, {"job": "c"}, c, t0)
    _flush(srv)  # add c
    _push(srv, {"job": "a"}, a[2], t0 + 2 * 10**9)
    _flush(srv)  # add a2
    _push(srv, {"job": "c"}, c2, t0 + 10**9)  # only in the WAL
    srv.kill()

    objects = _index_objects(data)
    assert len(objects) == 4
    frames = [(obj, off, p) for obj in objects for off, p in _frames(obj)]
    assert [orjson.loads(p)["op"] for _, _, p in frames].count("hdr") == 4

    def offset_of(job: str) -> tuple[Path, int, bytes]:
        return next((o, off, p) for o, off, p in frames
                    if orjson.loads(p).get("labels") == f'{{job="{job}"}}')

    a_obj, a0_off, a0 = offset_of("a")
    b_obj, b_off, b_rec = offset_of("b")
    c_obj, c_off, _ = offset_of("c")
    assert a_obj == b_obj and c_obj != a_obj
    _flip(a_obj, a0_off + 8 + len(a0) // 2)  # a byte of the JSON
    _flip(b_obj, b_off + 3, 0x40)  # the length's top byte: the frame claims 1 GiB
    _flip(c_obj, c_off + 5)  # the CRC
    b_path = orjson.loads(b_rec)["path"]
    b_file = data / "tenants" / "t-fake" / b_path
    b_file.write_bytes(encode_chunk(decode_chunk(b_file.read_bytes(), {}), 1)[0])

    srv.start()
    got_a, _ = _query(srv, '{job="a"}')
    got_b, _ = _query(srv, '{job="b"}')
    got_c, _ = _query(srv, '{job="c"}')
    lost = _metric(srv, "sluiceway_index_records_lost_total", tenant="fake")
    readded = _metric(srv, "sluiceway_index_chunks_readded_total", tenant="fake")
    set_aside = _metric(srv, "sluiceway_chunks_quarantined_total", tenant="fake",
                        reason="unindexed")
    assert sorted(got_a) == sorted(a[0] + a[1] + a[2])  # labels from a's other records
    assert sorted(got_c) == sorted(c + c2)  # labels from the WAL
    assert got_b == []  # b's only chunk: no record, no WAL names its labels
    assert (lost, readded, set_aside) == (3, 2, 1)
    log = srv.log()
    for obj, off in ((a_obj, a0_off), (b_obj, b_off), (c_obj, c_off)):
        assert f"{obj.name}: damaged record at offset {off}" in log
    assert Path(b_path).name in log and "100 lines" in log
    quarantined = data / "tenants" / "t-fake" / "quarantine" / "unindexed" / b_path
    assert quarantined.exists()

    # Once b is seen again, the next start knows its labels and takes the chunk back.
    b2 = _lines("b2", 10)
    _push(srv, {"job": "b"}, b2, t0 + 10**9)
    srv.stop()
    srv.start()
    got_b, _ = _query(srv, '{job="b"}')
    got_a, _ = _query(srv, '{job="a"}')
    srv.stop()
    assert sorted(got_b) == sorted(b + b2)
    assert sorted(got_a) == sorted(a[0] + a[1] + a[2])
    assert not quarantined.exists()


def test_an_index_object_cut_short_is_damage_and_its_chunks_come_back(tmp_path: Path) -> None:
    """An index object is put whole, so one that ends in half a record (a disk that lost
    its tail) is damage, counted: the chunks it named come back from the chunk listing,
    and new objects are read as before."""
    data = tmp_path / "data"
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  compaction_enabled: false\n")
    srv = ServerProcess(data, config=cfg).start()
    t0 = time.time_ns() - 1800 * 10**9
    first, second = _lines("first", 1000), _lines("second", 1000)
    _push(srv, {"job": "idx"}, first, t0)
    _flush(srv)
    srv.kill()
    (obj,) = _index_objects(data)
    (_, hdr), (add_off, _) = _frames(obj)
    with open(obj, "r+b") as f:
        f.truncate(add_off + 40)  # the header and part of the one "add" record
    srv.start()
    _push(srv, {"job": "idx"}, second, t0 + 10**9)
    _flush(srv)
    srv.stop()
    srv.start()
    got, _ = _query(srv, '{job="idx"}')
    lost = _metric(srv, "sluiceway_index_records_lost_total", tenant="fake")
    srv.stop()
    assert sorted(got) == sorted(first + second)
    assert lost == 1
    assert f"{obj.name}: damaged record at offset {add_off}" in srv.log()
    assert "not named by the index, is taken back" in srv.log()


def test_a_flush_whose_index_object_cannot_be_written_keeps_every_line(tmp_path: Path) -> None:
    """Chunk objects are durable, then the index object that names them fails (the disk
    is full): the chunks are deleted (nothing names them), the heads stay in memory and
    in the WAL, and the next flush names new chunks; no line is lost or doubled, then or
    after a restart."""
    script = f"""
import errno, sys, time
import numpy as np
from pathlib import Path
from sluiceway.model import EntryBlock, Matcher
from sluiceway.store import ChunkWriteError, LocalDir, Store, StoreConfig

class IndexDiskFull(LocalDir):
    full = True
    def put_many(self, items):
        if self.full and any(k.startswith("index/") for k, _ in items):
            out = super().put_many([(k, d) for k, d in items if not k.startswith("index/")])
            it = iter(out)
            return [OSError(errno.ENOSPC, "No space left on device") if k.startswith("index/")
                    else next(it) for k, _ in items]
        return super().put_many(items)

data = Path({str(tmp_path / "data")!r})
objects = IndexDiskFull(data / "tenants")
cfg = StoreConfig(data_dir=data, compaction_enabled=False)
st = Store(cfg, objects=objects)
base = time.time_ns()
lines = [f"line {{i}}".encode() for i in range(100)]
st.push("fake", [EntryBlock.from_lines({{"app": "a"}}, np.arange(100, dtype=np.int64) + base,
                                       lines)]).result()
try:
    st.flush_all()
    print("flushed")
except ChunkWriteError as exc:
    print("failed:", exc)
print("chunks", len(objects.list("t-fake/chunks/")), "index", len(objects.list("index/")))

def count():
    return sorted(ln for ref in st.series(["fake"], [Matcher("app", "=", "a")], 0, 2**62)
                  for b in st.blocks(ref, 0, 2**62, "forward") for ln in b.lines())
print("served", count() == sorted(lines))
objects.full = False
st.flush_all()
print("chunks", len(objects.list("t-fake/chunks/")), "index", len(objects.list("index/")))
print("served", count() == sorted(lines))
st.close()
st = Store(cfg, objects=objects)
print("after restart", count() == sorted(lines), st.tenants["fake"].index_records_lost)
st.close()
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("failed:") and "No space left" in out[0], out
    assert out[1:] == ["chunks 0 index 0", "served True", "chunks 1 index 1", "served True",
                       "after restart True 0"], out


# --- the WAL -----------------------------------------------------------------------------------

def _wal_case(tmp_path: Path, damage: str) -> tuple[ServerProcess, list[list[str]]]:
    data = tmp_path / "data"
    srv = ServerProcess(data).start()
    t0 = time.time_ns() - 1800 * 10**9
    batches = [_lines(f"w{k}", 1000) for k in range(10)]
    for k, lines in enumerate(batches):
        _push(srv, {"job": "wal"}, lines, t0 + k * 10**6)
    srv.kill()
    seg = sorted((data / "wal").glob("*.wal"))[-1]
    frames = _frames(seg)
    assert len(frames) == 10
    off, payload = frames[3]
    if damage == "payload":
        _flip(seg, off + 8 + len(payload) - 100)  # inside one line of the 4th record
    else:
        _flip(seg, off + 2, 0x10)  # the length: the frame now claims 1 MiB more
    srv.start()
    return srv, batches


def test_wal_record_with_a_flipped_byte_loses_only_that_record(tmp_path: Path) -> None:
    srv, batches = _wal_case(tmp_path, "payload")
    got, _ = _query(srv, '{job="wal"}')
    lost = _metric(srv, "sluiceway_wal_records_lost_total")
    lost_lines = _metric(srv, "sluiceway_wal_lines_lost_total")
    srv.stop()
    assert sorted(got) == sorted(line for k, b in enumerate(batches) if k != 3 for line in b)
    assert (lost, lost_lines) == (1, 1000)
    assert "1 record (1000 lines) lost" in srv.log()


def test_wal_record_with_a_damaged_length_resynchronises(tmp_path: Path) -> None:
    srv, batches = _wal_case(tmp_path, "length")
    got, _ = _query(srv, '{job="wal"}')
    lost = _metric(srv, "sluiceway_wal_records_lost_total")
    srv.stop()
    assert sorted(got) == sorted(line for k, b in enumerate(batches) if k != 3 for line in b)
    assert lost == 1
    assert "1 record (1000 lines) lost" in srv.log()


# --- chunks ------------------------------------------------------------------------------------

def _chunks(data: Path, tenant: str = "fake") -> list[Path]:
    return sorted((data / "tenants" / f"t-{tenant}" / "chunks").glob("*/*.chunk"))


def test_corrupt_chunk_is_quarantined_and_the_rest_of_the_stream_answered(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  compaction_enabled: false\n")
    srv = ServerProcess(data, config=cfg).start()
    t0 = time.time_ns() - 1800 * 10**9
    parts = [_lines(f"p{k}", 200) for k in range(3)]
    names: list[str] = []
    for k, lines in enumerate(parts):
        _push(srv, {"job": "chunky"}, lines, t0 + k * 10**9)
        _flush(srv)
        names.append(next(p.name for p in _chunks(data) if p.name not in names))
    srv.stop()
    bad = next(p for p in _chunks(data) if p.name == names[1])
    size = bad.stat().st_size
    _flip(bad, _CHUNK_HEADER + (size - _CHUNK_HEADER) // 2, 0xFF)
    _flip(bad, size - 3, 0xFF)

    srv.start()
    got, body = _query(srv, '{job="chunky"}')
    assert sorted(got) == sorted(parts[0] + parts[2])
    assert body["status"] == "success" and "result" in body["data"]
    assert len(body["warnings"]) == 1 and names[1] in body["warnings"][0], body.get("warnings")
    r = httpx.get(f"{srv.url}/loki/api/v1/query", params={
        "query": 'sum(count_over_time({job="chunky"}[3h]))', "time": str(time.time_ns())})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][0]["value"][1] == "400"
    assert _metric(srv, "sluiceway_chunks_quarantined_total", tenant="fake",
                   reason="corrupt") == 1
    rel = bad.relative_to(data / "tenants" / "t-fake")
    quarantined = data / "tenants" / "t-fake" / "quarantine" / "corrupt" / rel
    assert quarantined.exists() and not bad.exists()
    assert f"chunk {rel}" in srv.log()
    srv.stop()
    srv.start()  # the index no longer names it
    got, body = _query(srv, '{job="chunky"}')
    srv.stop()
    assert sorted(got) == sorted(parts[0] + parts[2]) and "warnings" not in body


def test_compactor_survives_a_corrupt_chunk_and_keeps_compacting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  compaction_enabled: false\n")
    srv = ServerProcess(data, config=cfg).start()
    t0 = time.time_ns() - 1800 * 10**9
    x = [_lines(f"x{k}", 200) for k in range(2)]
    for k, lines in enumerate(x):
        _push(srv, {"job": "x"}, lines, t0 + k * 10**9, tenant="a")
        _flush(srv)
    _push(srv, {"job": "y"}, _lines("y0", 200), t0, tenant="b")
    _flush(srv)
    srv.stop()
    bad = _chunks(data, "a")[0]
    _flip(bad, _CHUNK_HEADER + (bad.stat().st_size - _CHUNK_HEADER) // 2, 0xFF)

    cfg.write_text("storage:\n  compaction_interval: 200ms\n  compaction_min_age: 0s\n")
    srv.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _metric(
            srv, "sluiceway_chunks_quarantined_total", tenant="a", reason="corrupt") < 1:
        time.sleep(0.1)
    assert _metric(srv, "sluiceway_chunks_quarantined_total", tenant="a", reason="corrupt") == 1
    assert "compacting" in srv.log() and bad.name in srv.log()

    # The compactor is still alive: a fresh chunk of another tenant is compacted.
    _push(srv, {"job": "y"}, _lines("y1", 200), t0 + 10**9, tenant="b")
    _flush(srv)
    fresh = next(path for path, r in _live_adds(data, "b").items()
                 if r["mint"] == t0 + 10**9 and r["lvl"] == 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fresh in _live_adds(data, "b"):
        time.sleep(0.1)
    got_x, _ = _query(srv, '{job="x"}', tenant="a")
    got_y, _ = _query(srv, '{job="y"}', tenant="b")
    srv.stop()
    assert fresh not in _live_adds(data, "b"), "the compactor stopped"
    assert sorted(got_x) == sorted(x[1])
    assert sorted(got_y) == sorted(_lines("y0", 200) + _lines("y1", 200))
