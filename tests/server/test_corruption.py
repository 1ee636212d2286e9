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

from tests.procs import REPO, ServerProcess

_FRAME = struct.Struct("<II")  # u32 payload length | u32 CRC32 (WAL and index log)
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


def _records(path: Path) -> list[dict]:
    """The index log's records so far (a live file: stops at a frame still being written)."""
    data, out, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        length, crc = _FRAME.unpack_from(data, pos)
        payload = data[pos + 8 : pos + 8 + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        out.append(orjson.loads(payload))
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


# --- the tenant's index log ------------------------------------------------------------------

def test_torn_index_tail_is_cut_before_new_records_are_appended(tmp_path: Path) -> None:
    """The issue's repro: 1,000 lines + /flush, SIGKILL, a torn record (8 bytes of frame
    header and part of a JSON record) at the end of index.log, restart, 1,000 more + /flush,
    SIGTERM, restart: all 2,000 acked lines are there."""
    data = tmp_path / "data"
    srv = ServerProcess(data).start()
    t0 = time.time_ns() - 1800 * 10**9
    first, second = _lines("first", 1000), _lines("second", 1000)
    _push(srv, {"job": "idx"}, first, t0)
    _flush(srv)
    srv.kill()
    index = data / "tenants" / "t-fake" / "index.log"
    good = index.stat().st_size
    with open(index, "ab") as f:
        f.write(_FRAME.pack(180, 0xDEADBEEF) + b'{"op":"add","fp":4711,"labels":"{jo')
    srv.start()
    _push(srv, {"job": "idx"}, second, t0 + 10**9)
    _flush(srv)
    srv.stop()
    srv.start()
    got, _ = _query(srv, '{job="idx"}')
    srv.stop()
    assert sorted(got) == sorted(first + second)
    assert f"index.log: torn record at offset {good}" in srv.log()
    _frames(index)  # nothing but whole frames: the torn bytes were cut, not built upon


def test_damaged_index_records_are_skipped_and_their_chunks_re_added(tmp_path: Path) -> None:
    """One damaged byte each in three index records (payload, length, CRC): the reader
    resynchronises after each, and the chunks they named come back when the stream's labels
    are known from other index records or from the WAL; a chunk whose labels are known from
    nowhere is counted, logged and set aside, and comes back once its stream is seen again."""
    data = tmp_path / "data"
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  compaction_enabled: false\n")
    srv = ServerProcess(data, config=cfg).start()
    t0 = time.time_ns() - 1800 * 10**9
    a = [_lines(f"a{k}", 100) for k in range(3)]
    b, c, c2 = _lines("b", 100), _lines("c", 100), _lines("c2", 100)
    _push(srv, {"job": "a"}, a[0], t0)
    _push(srv, {"job": "b"}, b, t0)
    _flush(srv)  # add a0, add b
    _push(srv, {"job": "a"}, a[1], t0 + 10**9)
    _flush(srv)  # add a1
    _push(srv, {"job": "c"}, c, t0)
    _flush(srv)  # add c
    _push(srv, {"job": "a"}, a[2], t0 + 2 * 10**9)
    _flush(srv)  # add a2
    _push(srv, {"job": "c"}, c2, t0 + 10**9)  # only in the WAL
    srv.kill()

    index = data / "tenants" / "t-fake" / "index.log"
    frames = _frames(index)
    assert len(frames) == 5

    def offset_of(job: str, nth: int = 0) -> tuple[int, bytes]:
        hits = [(o, p) for o, p in frames if orjson.loads(p)["labels"] == f'{{job="{job}"}}']
        return hits[nth]

    a0_off, a0 = offset_of("a")
    b_off, b_rec = offset_of("b")
    c_off, _ = offset_of("c")
    _flip(index, a0_off + 8 + len(a0) // 2)  # a byte of the JSON
    _flip(index, b_off + 3, 0x40)  # the length's top byte: the frame claims 1 GiB
    _flip(index, c_off + 5)  # the CRC
    b_path = orjson.loads(b_rec)["path"]

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
    for off in (a0_off, b_off, c_off):
        assert f"index.log: damaged record at offset {off}" in log
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


def test_index_append_survives_a_short_write(tmp_path: Path) -> None:
    """A write cut short (here by RLIMIT_FSIZE, in a child process) must not leave half a
    frame that later records are appended behind: the append fails loudly and the log is
    cut back, and the next append after the disk has room again is read back."""
    script = f"""
import resource
from pathlib import Path
from sluiceway.store._index import IndexLog
path = Path({str(tmp_path / "index.log")!r})
log = IndexLog(path)
log.append([{{"op": "add", "n": 1}}])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 100, hard))
try:
    log.append([{{"op": "add", "n": 2, "pad": "x" * 1000}}])
    print("appended")
except OSError as exc:
    print("failed:", exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.append([{{"op": "add", "n": 3}}])
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("failed:"), r.stdout
    assert [orjson.loads(p)["n"] for _, p in _frames(tmp_path / "index.log")] == [1, 3]


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
    index = data / "tenants" / "t-b" / "index.log"
    fresh = next(r["path"] for r in _records(index)
                 if r["op"] == "add" and r["mint"] == t0 + 10**9 and r["lvl"] == 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            r["op"] == "del" and r["path"] == fresh for r in _records(index)):
        time.sleep(0.1)
    got_x, _ = _query(srv, '{job="x"}', tenant="a")
    got_y, _ = _query(srv, '{job="y"}', tenant="b")
    srv.stop()
    assert any(r["op"] == "del" and r["path"] == fresh for r in _records(index)), \
        "the compactor stopped"
    assert sorted(got_x) == sorted(x[1])
    assert sorted(got_y) == sorted(_lines("y0", 200) + _lines("y1", 200))
