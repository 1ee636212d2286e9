"""The store writes chunk format 2 and reads it through range reads (issue 11, step 6).

Real stores on disk, in process: the chunks the flusher and the compactor write are
format 2 (blocks, a footer naming tenant, stream and WAL position); a query of a short
time range reads the footer and the one block it needs, not the chunk; format-1 chunks
(what earlier releases wrote) and format-2 chunks of one stream merge; the columnar query
engine gets a chunk's blocks one by one and answers as over the same lines in memory.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import orjson

from sluiceway.logql import ExecOptions, MemorySource, QueryParams, evaluate
from sluiceway.model import EntryBlock, Matcher, StreamBatch, format_labels
from sluiceway.server._querier import StoreSource
from sluiceway.store import CompactorConfig, IndexReader, LocalDir, Store, StoreConfig
from sluiceway.store import _chunk as v1
from sluiceway.store import _chunkfmt as v2
from sluiceway.store._index import IndexEntry, TenantIndex, Writer

S = 10**9
T0 = 1_700_000_000 * S
TENANT = "team.eu"  # stored as x-<hex>: the footer holds the id itself
LABELS = {"app": "api", "env": "prod"}
N = 16_000  # ~1.3 MB of lines (~1.45 MB raw): 6 blocks of 256 KiB, 2 of 1 MiB


def _lines(n: int = N, seed: int = 1, tag: str = "") -> tuple[np.ndarray, list[bytes]]:
    """`n` log lines, 1 ms apart from T0 on (ties every 7th line), ~80 bytes each."""
    rng = random.Random(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    ts[::7] = ts[::7] - 1_000_000 + (ts[::7] > T0)  # some equal timestamps
    ts = np.maximum.accumulate(ts)
    out = []
    for i in range(n):
        level = rng.choice(["info", "info", "warn", "error"])
        if i % 3:
            out.append(orjson.dumps({"level": level, "msg": f"request {tag}{i}", "status":
                                     rng.choice([200, 404, 500]), "trace":
                                     f"{rng.getrandbits(64):016x}", "dur_ms":
                                     rng.randint(1, 900)}))
        else:
            out.append(f"level={level} msg=\"job {tag}{i} done\" job={rng.getrandbits(48):012x}"
                       f" took={rng.randint(1, 90)}ms".encode())
    return ts, out


def _store(data: Path, objects: LocalDir | None = None, delete_delay: float | None = None,
           **kw: object) -> Store:
    cfg = StoreConfig(data_dir=data, wal_sync="interval", compaction_enabled=False, **kw)  # type: ignore[arg-type]
    compactor = (None if delete_delay is None
                 else CompactorConfig(retention_delete_delay=delete_delay))
    return Store(cfg, objects=objects, compactor=compactor)


def _push(st: Store, ts: np.ndarray, lines: list[bytes], labels: dict[str, str] = LABELS,
          parts: int = 4) -> None:
    for k in range(parts):
        lo, hi = len(lines) * k // parts, len(lines) * (k + 1) // parts
        st.push(TENANT, [EntryBlock.from_lines(labels, ts[lo:hi], lines[lo:hi])]).result()


def _read(st: Store, start: int = 0, end: int = 2**62, direction: str = "forward",
          warn: list[str] | None = None) -> list[tuple[int, bytes]]:
    """The stream's entries in `direction` order (blocks come in that order, each one
    ascending: backward, each is reversed here)."""
    out: list[tuple[int, bytes]] = []
    for ref in st.series([TENANT], [Matcher("app", "=", "api")], start, end):
        prev: int | None = None
        for b in st.blocks(ref, start, end, direction,
                           warn.append if warn is not None else None):
            entries = list(zip(b.ts.tolist(), b.lines(), strict=True))
            if direction == "backward":
                assert prev is None or entries[-1][0] < prev, "blocks overlap"
                prev = entries[0][0]
                entries.reverse()
            else:
                assert prev is None or entries[0][0] > prev, "blocks overlap"
                prev = entries[-1][0]
            out += entries
    return out


def _chunk_files(data: Path) -> list[Path]:
    return sorted(data.glob("tenants/*/chunks/*/*.chunk"))


def _after(footer: v2.Footer) -> list[int] | None:
    """The WAL position a chunk's lines come after, as its footer names it."""
    pos = orjson.loads(footer.log_pos)
    assert set(pos) == {"after"}, pos
    after: list[int] | None = pos["after"]
    return after


def test_flushed_chunks_are_format_2_naming_tenant_stream_and_wal_position(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    st = _store(data)
    ts, lines = _lines()
    _push(st, ts, lines)  # 4 WAL records, the first ones of the WAL
    st.flush_all()
    other = {"app": "worker"}
    st.push(TENANT, [EntryBlock.from_lines(other, ts[:5], lines[:5])]).result()
    st.flush_all()
    st.close()
    checkpoint = orjson.loads((data / "checkpoint.json").read_bytes())["after"]
    reader = IndexReader(LocalDir(data / "tenants"))
    reader.sync()
    [tenant_dir] = reader.tenant_dirs()
    adds = {e.ref.path: e.record() for e in reader.refs(tenant_dir)}
    files = _chunk_files(data)
    assert len(files) == len(adds) == 2
    footers = {}
    for f in files:
        raw = f.read_bytes()
        assert raw[:5] == v1.MAGIC + b"\x02"
        footer = v2.footer_of(raw)
        rec = adds[f.relative_to(data / "tenants" / tenant_dir).as_posix()]
        assert footer.version == 2 and footer.tenant == TENANT
        assert footer.labels == rec["labels"]
        assert (footer.n, footer.mint, footer.maxt, footer.line_bytes) == (
            rec["n"], rec["mint"], rec["maxt"], rec["raw"])
        assert all(b.filters == b"" for b in footer.blocks)  # the slot, empty for now
        footers[footer.labels] = footer
    big, small = footers[format_labels(LABELS)], footers[format_labels(other)]
    # Where their lines come from in the WAL: the first head from its start, the other
    # after the first four records, whose last one is before the checkpoint's.
    assert _after(big) is None
    after = _after(small)
    assert after is not None and after < checkpoint
    assert len(big.blocks) >= 5  # fresh chunks: ~256 KiB blocks
    assert all(a.maxt < b.mint for a, b in zip(big.blocks, big.blocks[1:], strict=False))
    st = _store(data)
    try:
        assert _read(st) == list(zip(ts.tolist(), lines, strict=True))
    finally:
        st.close()


def test_compaction_writes_format_2_in_larger_blocks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    st = _store(data, compaction_level=17, delete_delay=0)
    ts, lines = _lines()
    try:
        st.push("someone else", [EntryBlock.from_lines(LABELS, ts[:1], lines[:1])]).result()
        afters = []
        for k in range(3):  # three fresh chunks
            lo, hi = N * k // 3, N * (k + 1) // 3
            st.push(TENANT, [EntryBlock.from_lines(LABELS, ts[lo:hi], lines[lo:hi])]).result()
            st.flush_all()
            [f] = [f for f in _chunk_files(data) if "x-7465616d2e6575" in f.as_posix()
                   and _after(v2.footer_of(f.read_bytes())) not in afters]
            afters.append(_after(v2.footer_of(f.read_bytes())))
        assert len(_chunk_files(data)) == 4 and None not in afters and afters == sorted(afters)
        out = st.compact(min_age_s=0)
        assert (out.chunks_in, out.chunks_out) == (4, 2)
        st.compact(min_age_s=0)  # deletes the replaced files (delete_delay 0)
        [f] = [f for f in _chunk_files(data) if "x-7465616d2e6575" in f.as_posix()]
        footer = v2.footer_of(f.read_bytes())
        assert footer.version == 2 and footer.labels == format_labels(LABELS)
        assert _after(footer) == afters[0]  # the earliest of what it merged
        assert len(footer.blocks) == 2  # ~1 MiB blocks for compacted chunks
        assert _read(st) == list(zip(ts.tolist(), lines, strict=True))
        assert _read(st, direction="backward") == list(zip(ts.tolist(), lines,
                                                            strict=True))[::-1]
    finally:
        st.close()


class RecordingDir(LocalDir):
    """A LocalDir that notes every read (whole objects and ranges)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[str, int, int]] = []

    def get(self, key: str) -> bytes:
        data = super().get(key)
        self.reads.append((key, 0, len(data)))
        return data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        data = super().get_range(key, offset, length)
        self.reads.append((key, offset, len(data)))
        return data


def test_a_query_of_a_short_range_reads_its_footer_and_one_block(tmp_path: Path) -> None:
    data, objects = tmp_path / "data", RecordingDir(tmp_path / "data" / "tenants")
    st = _store(data, objects, cache_size=0)  # every read goes to the object store
    ts, lines = _lines()
    try:
        _push(st, ts, lines)
        st.flush_all()
        [f] = _chunk_files(data)
        size = f.stat().st_size
        footer = v2.footer_of(f.read_bytes())
        mid = footer.blocks[len(footer.blocks) // 2]
        # 1 % of the chunk's time range, inside one block.
        span = (footer.maxt - footer.mint) // 100
        start = mid.mint + (mid.maxt - mid.mint) // 2 - span // 2
        assert mid.mint <= start and start + span <= mid.maxt
        objects.reads.clear()
        got = _read(st, start, start + span)
        want = [(t, line) for t, line in zip(ts.tolist(), lines, strict=True)
                if start <= t < start + span]
        assert got == want and len(want) > 50
        read = [(off, n) for _k, off, n in objects.reads]
        assert read == [(size - v2.TAIL_BYTES, v2.TAIL_BYTES), (mid.offset, mid.length)], \
            (read, size)
        print(f"chunk {size} bytes in {len(footer.blocks)} blocks; a query of 1 % of its "
              f"time range read {sum(n for _o, n in read)} bytes")
        # The whole range: the tail, then one read of the blocks the tail does not hold.
        objects.reads.clear()
        assert _read(st) == list(zip(ts.tolist(), lines, strict=True))
        tail = size - v2.TAIL_BYTES
        rest = [b for b in footer.blocks if b.offset < tail]
        read = [(off, n) for _k, off, n in objects.reads]
        assert read == [(tail, v2.TAIL_BYTES), (8, rest[-1].end - 8)], read
    finally:
        st.close()


class WholeReadsDir(RecordingDir):
    """A backend whose range reads cost the whole object (as a JetStream bucket's)."""

    ranged_reads = False


def test_without_real_range_reads_a_chunk_is_read_once_whole(tmp_path: Path) -> None:
    data, objects = tmp_path / "data", WholeReadsDir(tmp_path / "data" / "tenants")
    st = _store(data, objects, cache_size=0)
    ts, lines = _lines()
    try:
        _push(st, ts, lines)
        st.flush_all()
        [f] = _chunk_files(data)
        objects.reads.clear()
        mid = int(ts[N // 2])
        assert _read(st, mid, mid + S) == [e for e in zip(ts.tolist(), lines, strict=True)
                                           if mid <= e[0] < mid + S]
        assert [(off, n) for _k, off, n in objects.reads] == [(0, f.stat().st_size)]
    finally:
        st.close()


def test_a_small_chunk_is_read_with_one_range_read(tmp_path: Path) -> None:
    data, objects = tmp_path / "data", RecordingDir(tmp_path / "data" / "tenants")
    st = _store(data, objects, cache_size=0)
    ts, lines = _lines(40)
    try:
        _push(st, ts, lines, parts=1)
        st.flush_all()
        [f] = _chunk_files(data)
        objects.reads.clear()
        assert _read(st) == list(zip(ts.tolist(), lines, strict=True))
        assert [(off, n) for _k, off, n in objects.reads] == [(0, f.stat().st_size)]
    finally:
        st.close()


def test_format_1_and_format_2_chunks_of_one_stream_merge_and_compact(
        tmp_path: Path) -> None:
    """A stream whose older chunks are format 1 (written before this release) gets
    format-2 chunks that overlap them in time and repeat some of their lines: reads give
    every line once, in order, both ways; compaction turns them into format 2."""
    data = tmp_path / "data"
    ts, lines = _lines()
    st = _store(data)
    try:
        first = slice(0, N // 2)
        _push(st, ts[first], lines[first], parts=2)
        st.flush_all()
        [f1] = _chunk_files(data)
        # Rewrite that chunk in format 1, as an earlier release left it (same name, same
        # lines, so the index's entry still describes it).
        block = EntryBlock.from_lines(LABELS, ts[first], lines[first])
        f1.write_bytes(v1.encode_chunk(block, 1)[0])
    finally:
        st.close()
    # The index's size must match the file: it is what a range read starts from.
    _fix_index_size(data, f1)
    st = _store(data, delete_delay=0)
    try:
        assert _read(st) == list(zip(ts[first].tolist(), lines[first], strict=True))
        # Format 2 on top: the second half, and every 10th line of the first half again
        # (exact repeats, merged away at read time), and lines between the old ones.
        extra_ts = ts[: N // 2 : 2] + 1  # several format-2 blocks inside the old chunk
        extra = [b"between " + x for x in lines[: N // 2 : 2]]
        again = list(range(0, N // 2, 10))
        new_ts = np.concatenate([ts[N // 2 :], ts[again], extra_ts])
        new_lines = lines[N // 2 :] + [lines[i] for i in again] + extra
        order = np.argsort(new_ts, kind="stable")
        new_ts = new_ts[order]
        new_lines = [new_lines[i] for i in order.tolist()]
        _push(st, new_ts, new_lines, parts=3)
        st.flush_all()
        heads = {f.read_bytes()[4] for f in _chunk_files(data)}
        assert heads == {1, 2}
        want = sorted(set(zip(ts.tolist(), lines, strict=True))
                      | set(zip(extra_ts.tolist(), extra, strict=True)))
        got = _read(st)
        assert [t for t, _ in got] == sorted(t for t, _ in got)
        assert sorted(got) == want and len(got) == len(want)
        assert sorted(_read(st, direction="backward")) == want
        mid = int(ts[N // 4])
        assert sorted(_read(st, mid, mid + 2 * S)) == [x for x in want
                                                     if mid <= x[0] < mid + 2 * S]
        st.compact(min_age_s=0)
        st.compact(min_age_s=0)
        assert {f.read_bytes()[4] for f in _chunk_files(data)} == {2}
        got = _read(st)
        assert [t for t, _ in got] == sorted(t for t, _ in got)
        assert sorted(got) == want and len(got) == len(want)
    finally:
        st.close()


def _fix_index_size(data: Path, chunk: Path) -> None:
    """Write the tenant's index again, naming `chunk` with its current size (the file was
    rewritten in format 1 in place; a chunk's path is never named again once taken out,
    so the index objects are replaced, as an earlier release's index would say it)."""
    objects = LocalDir(data / "tenants")
    tenant_dir = chunk.relative_to(data / "tenants").parts[0]
    index = TenantIndex(TENANT, objects, tenant_dir, Writer())
    index.sync()
    rel = chunk.relative_to(data / "tenants" / tenant_dir).as_posix()
    [e] = [e for e in index.live() if e.ref.path == rel]
    objects.delete_many([o.key for o in objects.list(index.prefix)])
    fixed = IndexEntry(e.fp, e.labels, dataclasses.replace(e.ref, size=chunk.stat().st_size))
    TenantIndex(TENANT, objects, tenant_dir, Writer()).add([fixed])


QUERIES = [
    'sum(count_over_time({app="api"}[1s]))',
    'sum by (level) (count_over_time({app="api"} | json | __error__="" [2s]))',
    'sum by (level) (count_over_time({app="api"} | logfmt | level != "" [2s]))',
    'sum(bytes_over_time({app="api"} |= "error" [1s]))',
    'sum by (status) (rate({app="api"} | json | __error__="" | status >= 400 [3s]))',
    'max(max_over_time({app="api"} |= "dur_ms" | json | unwrap dur_ms | __error__="" [2s]))',
    'count_over_time({app="api"} |~ "job [0-9]+5 " [1s])',
]


def test_the_columnar_engine_reads_format_2_blocks(tmp_path: Path) -> None:
    """Metric and log queries over a format-2 chunk of several blocks (and the head)
    answer as the same lines held in memory; the engine got the chunk block by block."""
    data = tmp_path / "data"
    st = _store(data)
    ts, lines = _lines()
    try:
        _push(st, ts[: N - 500], lines[: N - 500])
        st.flush_all()
        _push(st, ts[N - 500 :], lines[N - 500 :], parts=1)  # stays in the head
        [f] = _chunk_files(data)
        assert len(v2.footer_of(f.read_bytes()).blocks) >= 5
        st.cache.clear()  # read the chunk back from its file
        mem = MemorySource(block_size=1000)
        mem.push(TENANT, [StreamBatch(LABELS, ts.tolist(), [x.decode() for x in lines])])
        start, end = T0 - S, int(ts[-1]) + S
        for q in QUERIES:
            for lo, hi in ((start, end), (T0 + 3 * S, T0 + 5 * S)):
                want = evaluate(mem, q, QueryParams([TENANT], lo, hi, step_ns=S,
                                                    options=ExecOptions(columnar=False)))
                for columnar in (True, False):
                    blocks = [0]
                    src = StoreSource(st, ExecOptions(columnar=columnar),
                                      on_block=lambda b=blocks: b.__setitem__(0, b[0] + 1))
                    got = evaluate(src, q, QueryParams([TENANT], lo, hi, step_ns=S,
                                                       options=ExecOptions(columnar=columnar)))
                    assert got.to_loki_json()["result"] == want.to_loki_json()["result"], \
                        (q, lo, columnar)
                    assert not src.warnings
                    if (lo, hi) == (start, end):
                        assert blocks[0] >= 5, (q, blocks)
        logs = evaluate(StoreSource(st), '{app="api"} |= "error"', QueryParams(
            [TENANT], start, end, limit=5000, direction="forward"))
        want_logs = evaluate(mem, '{app="api"} |= "error"', QueryParams(
            [TENANT], start, end, limit=5000, direction="forward"))
        assert logs.to_loki_json()["result"] == want_logs.to_loki_json()["result"]
    finally:
        st.close()


def _two_overlapping_chunks(data: Path) -> tuple[Store, list[tuple[int, bytes]],
                                                  list[tuple[int, bytes]], Path]:
    """A stream with two format-2 chunks over the same time range (even and odd lines);
    returns the store, each chunk's entries, and the second chunk's file."""
    st = _store(data, cache_size=0)
    ts, lines = _lines()
    halves = []
    for k in (0, 1):
        sel = slice(k, None, 2)
        _push(st, ts[sel] + k, lines[sel], parts=2)
        st.flush_all()
        halves.append(list(zip((ts[sel] + k).tolist(), lines[sel], strict=True)))
    [second] = [f for f in _chunk_files(data)
                if v2.footer_of(f.read_bytes()).mint == int(ts[1]) + 1]
    return st, halves[0], halves[1], second


def test_a_damaged_block_costs_its_chunk_from_there_on_and_nothing_before(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    st, first, second, f = _two_overlapping_chunks(data)
    try:
        footer = v2.footer_of(f.read_bytes())
        assert len(footer.blocks) >= 3
        bad = footer.blocks[2]
        raw = bytearray(f.read_bytes())
        raw[bad.offset + bad.length // 2] ^= 0xFF
        f.write_bytes(bytes(raw))
        # A range the damaged block is not in reads fine: it is never looked at.
        lo, hi = footer.blocks[0].mint, footer.blocks[1].maxt + 1
        warnings: list[str] = []
        assert sorted(_read(st, lo, hi, warn=warnings)) == sorted(
            e for e in first + second if lo <= e[0] < hi)
        assert warnings == [] and f.exists()
        # The whole range: the first chunk whole, the second up to its damaged block.
        got = _read(st, warn=warnings)
        assert sorted(got) == sorted(first + [e for e in second if e[0] < bad.mint])
        assert len(warnings) == 1 and "damaged and was quarantined" in warnings[0]
        assert "block 2 checksum mismatch" in warnings[0]
        assert not f.exists()
        assert list(data.glob("tenants/*/quarantine/corrupt/chunks/*/*.chunk"))
        warnings.clear()
        assert sorted(_read(st, warn=warnings)) == first and warnings == []
    finally:
        st.close()


def test_a_chunk_whose_footer_is_damaged_leaves_the_other_chunks_whole(
        tmp_path: Path) -> None:
    """The damaged chunk gives no block at all: what the other chunk held past its start
    still comes out (it waited for the damaged chunk's blocks to be merged with)."""
    data = tmp_path / "data"
    st, first, _second, f = _two_overlapping_chunks(data)
    try:
        raw = bytearray(f.read_bytes())
        raw[-30] ^= 0xFF  # inside the footer
        f.write_bytes(bytes(raw))
        for direction in ("forward", "backward"):
            warnings: list[str] = []
            got = _read(st, direction=direction, warn=warnings)
            assert got == (first if direction == "forward" else first[::-1])
        assert not f.exists()
    finally:
        st.close()
