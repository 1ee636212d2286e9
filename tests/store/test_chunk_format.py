"""Chunk format 2 (`sluiceway.store._chunkfmt`): round trips, format-1 chunks through the
same reader, damage detected at every byte, block selection by time, footer from the tail.
In-process: no process boundary is under test."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluiceway.model import EntryBlock
from sluiceway.store import ChunkError
from sluiceway.store import _chunk as v1
from sluiceway.store import _chunkfmt as fmt
from tests.procs import REPO

LABELS = {"app": "api", "env": "prod"}
LABELS_TEXT = '{app="api", env="prod"}'

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_metadata = st.one_of(st.none(), st.dictionaries(
    st.text("abcdefghij_", min_size=1, max_size=8), _text, max_size=3))


@st.composite
def blocks(draw: st.DrawFn, max_lines: int = 120) -> EntryBlock:
    """A sorted block as the flusher hands it over: empty and unicode lines, runs of equal
    timestamps, big steps, metadata on some lines or none at all."""
    n = draw(st.integers(1, max_lines))
    steps = draw(st.lists(st.sampled_from([0, 0, 1, 7, 10**9, 2**40]), min_size=n, max_size=n))
    base = draw(st.integers(-(2**62), 2**62))
    ts = np.cumsum(np.array(steps, dtype=np.int64)) + base
    lines = [s.encode() for s in draw(st.lists(_text, min_size=n, max_size=n))]
    md = draw(st.one_of(st.none(), st.lists(_metadata, min_size=n, max_size=n)))
    return EntryBlock.from_lines(LABELS, ts, lines, md)


def _entries(b: EntryBlock) -> list[tuple[int, bytes, object]]:
    md = b.metadata if b.metadata is not None else [None] * len(b)
    return list(zip(b.ts.tolist(), b.lines(), md, strict=True))


def _encode(b: EntryBlock, block_bytes: int = 256, **kw: object) -> bytes:
    data, meta = fmt.encode_chunk_v2(b, 1, tenant="acme", labels=LABELS_TEXT,
                                     log_pos=b"\x00pos\xff", block_bytes=block_bytes,
                                     **kw)  # type: ignore[arg-type]
    assert (meta.n, meta.mint, meta.maxt, meta.raw_bytes, meta.size) == (
        len(b), int(b.ts[0]), int(b.ts[-1]), b.nbytes, len(data))
    return data


class Reader:
    """A chunk's bytes behind range reads, as an object store serves them; records reads."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


# --- round trips ---------------------------------------------------------------------

@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(), st.sampled_from([1, 64, 300, 4096, fmt.BLOCK_BYTES]))
def test_round_trip(b: EntryBlock, block_bytes: int) -> None:
    data = _encode(b, block_bytes)
    out = fmt.decode_chunk(data, LABELS)
    assert _entries(out) == _entries(b)
    assert out.labels == LABELS
    footer = fmt.footer_of(data)
    assert (footer.version, footer.tenant, footer.labels, footer.log_pos) == (
        2, "acme", LABELS_TEXT, b"\x00pos\xff")
    assert (footer.n, footer.mint, footer.maxt, footer.line_bytes) == (
        len(b), int(b.ts[0]), int(b.ts[-1]), b.nbytes)
    parts = fmt.decode_blocks(footer, footer.blocks, data, 0, LABELS)
    assert [_entries(p) for p in parts] == [
        _entries(b.slice(sum(x.n for x in footer.blocks[:i]),
                         sum(x.n for x in footer.blocks[: i + 1])))
        for i in range(len(parts))]
    for p, info in zip(parts, footer.blocks, strict=True):
        assert (len(p), int(p.ts[0]), int(p.ts[-1]), p.nbytes) == (
            info.n, info.mint, info.maxt, info.line_bytes)
    # Blocks are time-disjoint: a run of equal timestamps is never split.
    assert all(a.maxt < c.mint for a, c in zip(footer.blocks, footer.blocks[1:], strict=False))


def test_blocks_are_about_the_size_asked_for() -> None:
    lines = [f"line {i:06d} ".encode() + b"x" * (i % 200) for i in range(30_000)]
    b = EntryBlock.from_lines(LABELS, np.arange(len(lines), dtype=np.int64), lines)
    footer = fmt.footer_of(_encode(b, 64 << 10))
    raw = [x.raw for x in footer.blocks]
    assert len(raw) == -(-(b.nbytes + 12 * len(b)) // (64 << 10))
    assert all(64 << 10 <= r < (64 << 10) + 12 + 212 for r in raw[:-1])


def test_fresh_chunks_get_small_blocks_and_compacted_ones_larger() -> None:
    assert fmt.block_bytes_for(1) == fmt.BLOCK_BYTES == 256 << 10
    assert fmt.block_bytes_for(17) == fmt.COMPACTED_BLOCK_BYTES == 1 << 20
    lines = [f"{i:07d} ".encode() + b"y" * 500 for i in range(2400)]  # ~1.2 MiB
    b = EntryBlock.from_lines(LABELS, np.arange(len(lines), dtype=np.int64), lines)
    fresh, _ = fmt.encode_chunk_v2(b, 1, tenant="t", labels=LABELS_TEXT)
    assert len(fmt.footer_of(fresh).blocks) == 5
    compacted, _ = fmt.encode_chunk_v2(b, 17, tenant="t", labels=LABELS_TEXT)
    assert len(fmt.footer_of(compacted).blocks) == 2


def test_blocks_end_on_coarse_time_edges() -> None:
    """A busy stream (about 1 MiB in 25 s) over 20 minutes around an hour: blocks end
    on minute (or coarser) edges — every block lies in one minute bucket `((m-1)·60 s,
    m·60 s]` of the ones a count over it feeds — none reaches over an hour's edge (a
    query's time splits), and all but the first and last and those cut at an hour are
    between half and 5/4 of the size asked for."""
    s = 10**9
    rng = np.random.default_rng(4)
    n = 400_000
    t0 = 1_699_999_200 * s - 600 * s + 123_456_789  # 10 minutes before an hour
    ts = t0 + np.cumsum(rng.integers(1, 6_000_000, n))
    lines = [b"x" * int(k) for k in rng.integers(60, 160, n)]
    b = EntryBlock.from_lines(LABELS, ts.astype(np.int64), lines)
    ends = fmt.cut_points(b, fmt.COMPACTED_BLOCK_BYTES)
    starts = [0, *ends[:-1]]
    spans = [(int(ts[a]), int(ts[e - 1])) for a, e in zip(starts, ends, strict=True)]
    hour, minute = 3600 * s, 60 * s
    assert all(lo // hour == hi // hour for lo, hi in spans)
    sizes = [int(b.offsets[e] - b.offsets[a]) + 12 * (e - a)
             for a, e in zip(starts, ends, strict=True)]
    odd = [i for i, (lo, hi) in enumerate(spans) if -(-lo // minute) != -(-hi // minute)]
    assert len(odd) <= 2  # the first block, and the one cut at the hour's edge
    regular = [sz for i, sz in enumerate(sizes[1:-1], 1)
               if spans[i][0] // hour == spans[i - 1][1] // hour
               and spans[i][1] // hour == spans[i + 1][0] // hour]
    assert len(regular) >= 30
    assert all((1 << 20) // 2 <= sz <= (1 << 20) * 5 // 4 for sz in regular)
    assert len({lo // hour for lo, _ in spans}) == 2
    # A chunk smaller than a block, over an hour's edge: two blocks, cut at the edge.
    edge = 1_699_999_200 * s
    small = EntryBlock.from_lines(LABELS, np.arange(edge - 5 * s, edge + 5 * s, s // 100),
                                  [b"y" * 100] * 1000)
    cuts = fmt.cut_points(small, fmt.COMPACTED_BLOCK_BYTES)
    assert cuts == [int(np.searchsorted(small.ts, edge)), 1000]


def test_a_run_of_equal_timestamps_longer_than_a_block_stays_in_one() -> None:
    ts = np.array([1] * 5 + [2] * 400 + [3] * 5, dtype=np.int64)
    b = EntryBlock.from_lines(LABELS, ts, [f"l{i}".encode() for i in range(len(ts))])
    footer = fmt.footer_of(_encode(b, 100))
    # The block that reaches its size inside the run of 2s takes the whole run.
    assert [(x.mint, x.maxt, x.n) for x in footer.blocks] == [(1, 2, 405), (3, 3, 5)]


def test_an_empty_block_is_refused() -> None:
    b = EntryBlock.from_lines(LABELS, np.zeros(0, dtype=np.int64), [])
    with pytest.raises(ValueError, match="at least one line"):
        _encode(b)


def test_per_block_filters_are_kept_in_the_footer() -> None:
    b = EntryBlock.from_lines(LABELS, np.arange(100, dtype=np.int64),
                              [f"line {i}".encode() for i in range(100)])
    data = _encode(b, 200, filters=lambda part: f"{len(part)}:{part.line(0).decode()}".encode())
    footer = fmt.footer_of(data)
    assert len(footer.blocks) > 3
    assert [x.filters for x in footer.blocks] == [
        f"{x.n}:line {x.mint}".encode() for x in footer.blocks]
    assert _entries(fmt.decode_chunk(data, LABELS)) == _entries(b)


def _log_block(n: int = 4000) -> EntryBlock:
    lines = [(f'{{"level":"info","msg":"request {i % 13} done","path":"/v1/{i % 7}",'
              f'"trace":"{i * 2654435761 % 2**32:08x}"}}').encode() for i in range(n)]
    md = [{"trace_id": f"{i:x}"} if i % 5 == 0 else None for i in range(n)]
    return EntryBlock.from_lines(LABELS, np.arange(n, dtype=np.int64) * 10**6 + 1, lines, md)


@pytest.mark.parametrize("kind", ["trained", "raw"])
def test_a_dictionary_compresses_every_block_and_travels_in_the_footer(kind: str) -> None:
    b = _log_block()
    d = fmt.train_dictionary(b, 8 << 10) if kind == "trained" else \
        zstandard.ZstdCompressionDict(b"".join(b.lines()[::40])[: 8 << 10],
                                      dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    data = _encode(b, 16 << 10, dictionary=d)
    footer = fmt.footer_of(data)
    assert footer.dict_kind == (fmt.DICT_ZSTD if kind == "trained" else fmt.DICT_RAW)
    assert footer.dictionary == d.as_bytes() and footer.dict_id == d.dict_id()
    assert _entries(fmt.decode_chunk(data, LABELS)) == _entries(b)
    # Without the dictionary a block cannot be read: it is really used.
    one = footer.blocks[1]
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().decompress(data[one.offset : one.end],
                                                max_output_size=one.raw)


# --- format 1 through the same reader ------------------------------------------------

@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks())
def test_format_1_chunks_read_as_one_block(b: EntryBlock) -> None:
    data, meta = v1.encode_chunk(b, 1)
    assert _entries(fmt.decode_chunk(data, LABELS)) == _entries(b)
    footer = fmt.footer_of(data)
    assert footer.version == 1 and footer.tenant is None and len(footer.blocks) == 1
    assert (footer.n, footer.mint, footer.maxt) == (meta.n, meta.mint, meta.maxt)
    r = Reader(data)
    got = fmt.read_blocks(r, fmt.read_footer(r, len(data)), -(2**63), 2**63 - 1, LABELS)
    assert [e for p in got for e in _entries(p)] == _entries(b)


def test_format_1_footer_of_a_large_chunk_reads_tail_then_header() -> None:
    b = EntryBlock.from_lines(LABELS, np.arange(20_000, dtype=np.int64),
                              [np.random.default_rng(i).bytes(8).hex().encode()
                               for i in range(20_000)])
    data, _ = v1.encode_chunk(b, 1)
    assert len(data) > fmt.TAIL_BYTES
    r = Reader(data)
    footer = fmt.read_footer(r, len(data))
    assert r.reads == [(len(data) - fmt.TAIL_BYTES, fmt.TAIL_BYTES), (0, v1.HEADER_SIZE)]
    assert footer.blocks[0].n == 20_000


def test_format_1_chunk_ending_in_the_trailer_magic_still_reads() -> None:
    """A format-1 file is one zstd frame: its last bytes can be anything, the format-2
    magic included. It is read as what its header says."""
    b = EntryBlock.from_lines(LABELS, np.arange(3, dtype=np.int64), [b"a", b"b", b"c"])
    data, _ = v1.encode_chunk(b, 1)
    forged = data[:-4] + fmt.TRAILER_MAGIC
    with pytest.raises(ChunkError, match="checksum"):  # the frame is damaged, and says so
        fmt.decode_chunk(forged, LABELS)
    footer = fmt.footer_of(forged)
    assert footer.version == 1 and footer.blocks[0].n == 3


def test_every_format_1_chunk_of_the_migration_data_reads_the_same() -> None:
    files = sorted((REPO / "tests" / "data" / "store-v1").glob("tenants/*/chunks/*/*.chunk"))
    assert len(files) > 20
    for path in files:
        data = path.read_bytes()
        old = v1.decode_chunk(data, LABELS)
        assert _entries(fmt.decode_chunk(data, LABELS)) == _entries(old)
        footer = fmt.footer_of(data)
        assert footer.version == 1 and footer.n == len(old)


# --- damage -----------------------------------------------------------------------------

def _small_chunk(dictionary: bool = False) -> tuple[EntryBlock, bytes]:
    b = _log_block(60)
    d = zstandard.ZstdCompressionDict(b"".join(b.lines()[::9]),
                                      dict_type=zstandard.DICT_TYPE_RAWCONTENT) \
        if dictionary else None
    data = _encode(b, 1200, dictionary=d,
                   filters=lambda part: part.line(0)[:5])
    assert len(fmt.footer_of(data).blocks) >= 3
    return b, data


@pytest.mark.parametrize("dictionary", [False, True])
def test_any_damaged_byte_is_a_chunk_error(dictionary: bool) -> None:
    """Every byte of a format-2 chunk is covered by a check: flipping any bit of any byte
    makes the whole-chunk read raise ChunkError (never another exception, never wrong
    lines), and so does cutting the file anywhere."""
    _b, data = _small_chunk(dictionary)
    for pos in range(len(data)):
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[pos] ^= mask
            with pytest.raises(ChunkError):
                fmt.decode_chunk(bytes(bad), LABELS)
    for cut in range(len(data)):
        with pytest.raises(ChunkError):
            fmt.decode_chunk(data[:cut], LABELS)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damage_anywhere_in_the_footer_is_found_from_the_tail(data: st.DataObject) -> None:
    _b, chunk = _small_chunk()
    footer = fmt.footer_of(chunk)
    start = footer.blocks[-1].end
    pos = data.draw(st.integers(start, len(chunk) - 1))
    mask = data.draw(st.integers(1, 255))
    bad = bytearray(chunk)
    bad[pos] ^= mask
    with pytest.raises(ChunkError):
        fmt.read_footer(Reader(bytes(bad)), len(bad))


def test_a_damaged_block_is_found_when_it_is_read_and_costs_only_itself() -> None:
    b, data = _small_chunk()
    footer = fmt.footer_of(data)
    victim = footer.blocks[1]
    for pos in range(victim.offset, victim.end):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        r = Reader(bytes(bad))
        f = fmt.read_footer(r, len(bad))  # the footer is intact
        with pytest.raises(ChunkError, match="block 1 checksum"):
            fmt.read_blocks(r, f, victim.mint, victim.maxt + 1, LABELS)
        others = fmt.read_blocks(r, f, footer.blocks[2].mint, footer.maxt + 1, LABELS)
        assert sum(len(p) for p in others) == sum(x.n for x in footer.blocks[2:])


def test_a_footer_lying_about_a_block_is_a_chunk_error() -> None:
    """The footer's own checksum matches (a writer bug, not bit rot): the decoded block
    must still agree with what the footer says."""
    b, data = _small_chunk()
    footer = fmt.footer_of(data)
    liar = footer.blocks[0]
    for wrong in (fmt.BlockInfo(0, liar.offset, liar.length, liar.n + 1, liar.mint,
                                liar.maxt, liar.raw, liar.line_bytes, liar.crc),
                  fmt.BlockInfo(0, liar.offset, liar.length, liar.n, liar.mint,
                                liar.maxt + 1, liar.raw, liar.line_bytes, liar.crc),
                  fmt.BlockInfo(0, liar.offset, liar.length, liar.n, liar.mint,
                                liar.maxt, liar.raw + 1, liar.line_bytes, liar.crc)):
        with pytest.raises(ChunkError):
            fmt.decode_blocks(footer, [wrong], data, 0, LABELS)


def test_format_1_damage_in_the_compressed_payload_is_a_chunk_error() -> None:
    data, _ = v1.encode_chunk(_log_block(60), 1)
    for pos in range(v1.HEADER_SIZE, len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(ChunkError):
            fmt.decode_chunk(bytes(bad), LABELS)


def test_not_a_chunk() -> None:
    for data in (b"", b"SLWC", b"x" * 100, fmt.HEADER + b"\x00" * 40,
                 b"\x00" * 100 + fmt.TRAILER_MAGIC):
        with pytest.raises(ChunkError):
            fmt.decode_chunk(data, LABELS)


# --- reading by time range ---------------------------------------------------------------

@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(max_lines=300), st.data())
def test_range_selection_reads_exactly_the_blocks_that_overlap(b: EntryBlock,
                                                               data: st.DataObject) -> None:
    chunk = _encode(b, data.draw(st.sampled_from([64, 256, 1024])))
    lo, hi = int(b.ts[0]), int(b.ts[-1])
    start = data.draw(st.integers(lo - 10, hi + 10))
    end = data.draw(st.integers(start, hi + 11))
    r = Reader(chunk)
    footer = fmt.read_footer(r, len(chunk))
    r.reads.clear()
    got = fmt.read_blocks(r, footer, start, end, LABELS)
    chosen = footer.overlapping(start, end)
    # Every entry in the range is in a chosen block, and every chosen block overlaps.
    want = _entries(b.clip(start, end))
    assert [e for p in got for e in _entries(p) if start <= e[0] < end] == want
    assert all(x.maxt >= start and x.mint < end for x in chosen)
    assert sum(len(p) for p in got) == sum(x.n for x in chosen)
    # One read per run of neighbouring blocks, and nothing else is read.
    assert r.reads == fmt.byte_ranges(chosen)
    assert len(r.reads) <= 1  # the chosen blocks of one range are always neighbours
    if len(chosen) == 1:
        assert r.reads == [(chosen[0].offset, chosen[0].length)]


def test_byte_ranges_merge_only_neighbours() -> None:
    b = EntryBlock.from_lines(LABELS, np.arange(400, dtype=np.int64),
                              [f"line {i}".encode() for i in range(400)])
    footer = fmt.footer_of(_encode(b, 300))
    x = footer.blocks
    assert fmt.byte_ranges([x[0], x[1], x[3]]) == [(x[0].offset, x[0].length + x[1].length),
                                                   (x[3].offset, x[3].length)]
    assert fmt.byte_ranges([]) == []


def test_the_footer_comes_from_one_read_of_the_tail() -> None:
    rng = np.random.default_rng(3)
    lines = [rng.bytes(40).hex().encode() for _ in range(40_000)]
    b = EntryBlock.from_lines(LABELS, np.arange(len(lines), dtype=np.int64), lines)
    data = _encode(b, fmt.BLOCK_BYTES)
    assert len(data) > 4 * fmt.TAIL_BYTES
    r = Reader(data)
    footer = fmt.read_footer(r, len(data))
    assert r.reads == [(len(data) - fmt.TAIL_BYTES, fmt.TAIL_BYTES)]
    assert footer == fmt.footer_of(data)
    # A footer larger than the first read costs exactly one more read, of the footer.
    r = Reader(data)
    small = fmt.read_footer(r, len(data), tail_bytes=64)
    footer_off = footer.blocks[-1].end
    assert r.reads == [(len(data) - 64, 64),
                       (footer_off, len(data) - fmt.TRAILER_SIZE - footer_off)]
    assert small == footer
    # A query over 1 % of the chunk's time reads the tail and one block.
    t = int(b.ts[len(b) // 2])
    r.reads.clear()
    got = fmt.read_blocks(r, footer, t, t + len(b) // 100, LABELS)
    assert len(r.reads) == 1 and r.reads[0][1] < len(data) // 4
    assert sum(len(p.clip(t, t + len(b) // 100)) for p in got) == len(b) // 100


def test_the_labels_and_tenant_rebuild_an_index_entry() -> None:
    """What a lost index needs is in the footer: tenant, labels, time range, lines, bytes."""
    b = _log_block(500)
    data = _encode(b, 4096)
    f = fmt.footer_of(data)
    entry = {"tenant": f.tenant, "labels": f.labels, "mint": f.mint, "maxt": f.maxt,
             "n": f.n, "raw": f.line_bytes, "size": f.size}
    assert orjson.loads(orjson.dumps(entry)) == {
        "tenant": "acme", "labels": LABELS_TEXT, "mint": int(b.ts[0]), "maxt": int(b.ts[-1]),
        "n": 500, "raw": b.nbytes, "size": len(data)}
