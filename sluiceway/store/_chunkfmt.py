"""Chunk format 2: independent blocks, each with its own time range and checksum, and a
footer that names the chunk's stream, so one block is one byte range and a lost index
can be rebuilt from the chunks alone. One reader for formats 1 and 2.

File layout (little-endian):
  header   b"SLWC" | u8 format version (2) | u8 0 | u16 0                    (8 bytes)
  blocks   one zstd frame per block, back to back from offset 8; a block's payload is
           format 1's (`encode_payload`): shuffled ts differences from the block's mint,
           shuffled line lengths, lines, metadata JSON
  footer   str tenant | str labels (Loki's text form) | bytes log position (opaque)
           | u8 codec (1: zstd) | u8 dictionary kind (0 none, 1 zstd dictionary,
             2 raw content) | u16 0 | u32 dictionary id | bytes dictionary
           | u32 number of blocks | that many block entries (`_BLOCK`):
             u64 offset | u32 length | u32 lines | i64 mint | i64 maxt
             | u32 payload bytes | u32 line bytes | u32 CRC32 of the block's bytes
             | u32 filters length
           | every block's filters, in block order (empty until the query-speed work
             puts per-block filters there) | bytes extension (empty; later fields)
  trailer  u64 footer offset | u32 footer length | u16 format version (2) | u16 0
           | u32 CRC32 of footer + the trailer's first 16 bytes | b"SLWF"   (24 bytes)
where `str` and `bytes` are a u32 length and that many bytes (UTF-8 for `str`).

Blocks tile the file between header and footer, and each byte is covered by a check:
the header by its exact value, a block by its CRC32, the footer and trailer by the
trailer's CRC32 and its magic. Blocks never split a run of equal timestamps: they are
time-disjoint (block i's maxt < block i+1's mint), so each one can go to the query engine
as it is.

Reading a chunk through ranges (`read_footer`): one read of the tail (`TAIL_BYTES`, the
whole file when smaller) holds the trailer and, as a rule, the footer; a second read only
when the footer is larger. Then `overlapping(start, end)` picks the blocks,
`byte_ranges` merges neighbours into ranges, and `decode_blocks` decodes what was read.
A format-1 chunk reads as a footer of one block (its header read separately when the
tail does not reach it) with no tenant, labels or log position.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard

from sluiceway.model import EntryBlock
from sluiceway.store._chunk import (
    HEADER_SIZE as V1_HEADER_SIZE,
)
from sluiceway.store._chunk import (
    MAGIC,
    ChunkError,
    ChunkMeta,
    cctx,
    dctx,
    decode_payload,
    encode_payload,
    read_header,
)

VERSION = 2
HEADER = MAGIC + bytes([VERSION, 0, 0, 0])
TRAILER_MAGIC = b"SLWF"
_TRAILER = struct.Struct("<QIHHI4s")
TRAILER_SIZE = _TRAILER.size  # 24
_BLOCK = np.dtype([("offset", "<u8"), ("length", "<u4"), ("n", "<u4"), ("mint", "<i8"),
                   ("maxt", "<i8"), ("raw", "<u4"), ("line_bytes", "<u4"), ("crc", "<u4"),
                   ("filters", "<u4")])
_U32 = struct.Struct("<I")
_CODEC_ZSTD = 1
DICT_NONE, DICT_ZSTD, DICT_RAW = 0, 1, 2

# Raw bytes per block (12 per line + the line), about. Measured (bench/chunk_format.py,
# README "Storage"): independent blocks lose zstd's long history, which on logs full of
# random ids costs ~6 % of the size at 256 KiB and ~3 % at 1 MiB after compaction (level
# 17), where the store must stay >= 5x; a per-chunk dictionary does not win it back. So
# fresh chunks (level 1, compacted within the hour) use 256 KiB blocks and compacted
# chunks 1 MiB (`block_bytes_for`).
BLOCK_BYTES = 256 << 10
COMPACTED_BLOCK_BYTES = 1 << 20
COMPACTED_LEVEL = 10  # levels from here on are the compactor's
TAIL_BYTES = 16 << 10  # the first read of a chunk's tail: footers are ~1-2 KiB


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """One block as the footer describes it; `offset`/`length` are its bytes in the file."""

    index: int
    offset: int
    length: int
    n: int
    mint: int
    maxt: int
    raw: int  # the decompressed payload's bytes
    line_bytes: int  # of its lines alone (format 1: unknown, `raw` - 12 n is the bound)
    crc: int
    filters: bytes = b""

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def has_metadata(self) -> bool:
        """Whether its payload holds structured metadata (or the footer cannot tell:
        format 1)."""
        return self.raw != 12 * self.n + self.line_bytes


@dataclass(frozen=True, slots=True)
class Footer:
    """What a chunk says about itself, read from its tail (`read_footer`)."""

    version: int
    size: int  # of the whole file
    blocks: tuple[BlockInfo, ...]
    tenant: str | None = None  # None for format 1, which does not hold them
    labels: str | None = None
    log_pos: bytes = b""
    dict_kind: int = DICT_NONE
    dict_id: int = 0
    dictionary: bytes = b""
    extension: bytes = b""
    _zdict: list[zstandard.ZstdCompressionDict] = field(default_factory=list, init=False,
                                                        repr=False, compare=False)

    @property
    def n(self) -> int:
        return sum(b.n for b in self.blocks)

    @property
    def mint(self) -> int:
        return self.blocks[0].mint

    @property
    def maxt(self) -> int:
        return max(b.maxt for b in self.blocks)

    @property
    def line_bytes(self) -> int:
        """Bytes of the lines (`EntryBlock.nbytes`, the index's `raw`)."""
        return sum(b.line_bytes for b in self.blocks)

    def overlapping(self, start: int, end: int) -> list[BlockInfo]:
        """The blocks holding entries in [start, end), in file (= time) order."""
        return [b for b in self.blocks if b.maxt >= start and b.mint < end]

    def decompressor(self) -> zstandard.ZstdDecompressor:
        if self.dict_kind == DICT_NONE:
            return dctx()
        if not self._zdict:  # made once per footer: zstd keeps its digested form on it
            kind = zstandard.DICT_TYPE_FULLDICT if self.dict_kind == DICT_ZSTD \
                else zstandard.DICT_TYPE_RAWCONTENT
            self._zdict.append(zstandard.ZstdCompressionDict(self.dictionary, dict_type=kind))
        return zstandard.ZstdDecompressor(dict_data=self._zdict[0])


# --- writing -----------------------------------------------------------------------------

def block_bytes_for(level: int) -> int:
    """The block size for a chunk written at zstd `level`: fresh chunks (the flusher's
    level 1) get small blocks, compacted ones (level 17) larger ones."""
    return COMPACTED_BLOCK_BYTES if level >= COMPACTED_LEVEL else BLOCK_BYTES


# Where blocks end, when they can: on a multiple of the coarsest of these (seconds) that
# falls between half and 5/4 of the block size. A block then never straddles a bucket
# edge of a query whose window edges lie on that grid (a minute, an hour...), so a count
# over it can be answered from its footer (`ReadHints.summary_grid`) without reading it.
GRIDS_NS = tuple(s * 10**9 for s in (3600, 600, 300, 60, 30, 10, 5, 1))
SPLIT_NS = 3600 * 10**9  # no block reaches over an hour's edge (`split_queries_by_interval`)


def cut_points(block: EntryBlock, block_bytes: int = BLOCK_BYTES) -> list[int]:
    """Where `block` (ascending) is cut into blocks of about `block_bytes` raw bytes: the
    end index of each, never inside a run of equal timestamps. A block ends where its
    last entry is at or before a multiple of the coarsest grid of `GRIDS_NS` that gives
    it between 1/2 and 5/4 of `block_bytes`, and the next one starts after it; without
    such a multiple (dense data: under a second), at `block_bytes`. No block reaches
    over an hour's edge (`_split_edge`: the first and last block of a chunk may be small)."""
    n = len(block)
    ts = block.ts
    sizes = np.diff(block.offsets) + 12
    cum = np.cumsum(sizes)
    ends: list[int] = []
    start = 0
    while start < n:
        base = int(cum[start - 1]) if start else 0
        end = int(np.searchsorted(cum, base + block_bytes, "left")) + 1
        if end >= n:
            end = _split_edge(ts, start, n)
            ends.append(end)
            if end == n:
                break
            start = end
            continue
        longest = min(n, int(np.searchsorted(cum, base + block_bytes * 5 // 4, "left")) + 1)
        shortest = max(start + 1, int(np.searchsorted(cum, base + block_bytes // 2, "left"))
                       + 1)
        aligned = _aligned_end(ts, shortest, end, longest) if shortest < longest else None
        # Keep equal timestamps together: blocks stay strictly time-disjoint.
        end = aligned if aligned is not None else int(
            np.searchsorted(ts, ts[end - 1], "right"))
        end = _split_edge(ts, start, end)
        ends.append(end)
        start = end
    return ends


def _split_edge(ts: np.ndarray[Any, np.dtype[np.int64]], start: int, end: int) -> int:
    """`end`, or an earlier one so that the block does not reach over a multiple of
    `SPLIT_NS` (a query's time splits are counted apart: a block over their edge is read
    by both, never counted from its footer)."""
    edge = (int(ts[start]) // SPLIT_NS + 1) * SPLIT_NS  # the first edge past its start
    if edge <= int(ts[end - 1]):  # a split is [edge - SPLIT_NS, edge): cut before `edge`
        cut = int(np.searchsorted(ts, edge, "left"))
        if start < cut < end:
            return cut
    return end


def _aligned_end(ts: np.ndarray[Any, np.dtype[np.int64]], shortest: int, nominal: int,
                 longest: int) -> int | None:
    """An end in [shortest, longest) whose last entry is at or before a multiple T of the
    coarsest grid possible, and the next entry after it (the multiple nearest `nominal`'s
    last entry), or None."""
    lo, hi, mid = int(ts[shortest - 1]), int(ts[longest - 1]), int(ts[nominal - 1])
    for g in GRIDS_NS:
        below = mid // g * g
        for t in (below, below + g) if mid - below <= g // 2 else (below + g, below):
            if lo <= t < hi:
                return int(np.searchsorted(ts, t, "right"))
    return None


def encode_chunk_v2(block: EntryBlock, level: int, *, tenant: str, labels: str,
                    log_pos: bytes = b"", block_bytes: int | None = None,
                    dictionary: zstandard.ZstdCompressionDict | None = None,
                    filters: Callable[[EntryBlock], bytes] | None = None,
                    ) -> tuple[bytes, ChunkMeta]:
    """`block` (n >= 1, ascending by ts, as the flusher and compactor hand it over) as a
    format-2 chunk, cut in blocks of about `block_bytes` (default: `block_bytes_for`).
    `log_pos` is the ingest log position the chunk covers, as the log encodes it.
    `dictionary` (optional) compresses every block and is stored in the footer;
    `filters` (optional) makes each block's filter bytes."""
    n = len(block)
    block_bytes = block_bytes if block_bytes is not None else block_bytes_for(level)
    if not n:
        raise ValueError("a chunk holds at least one line")
    if dictionary is not None:
        comp = zstandard.ZstdCompressor(level=level, dict_data=dictionary)
        dict_kind = DICT_ZSTD if dictionary.dict_id() else DICT_RAW
        dict_bytes, dict_id = dictionary.as_bytes(), dictionary.dict_id()
    else:
        comp, dict_kind, dict_bytes, dict_id = cctx(level), DICT_NONE, b"", 0
    parts = [HEADER]
    rows = []
    filter_parts: list[bytes] = []
    offset = len(HEADER)
    lo = 0
    for hi in cut_points(block, block_bytes):
        part = block.slice(lo, hi)
        payload = encode_payload(part)
        if len(payload) > 0xFFFFFFFF:
            raise ValueError(f"a block of {len(payload)} bytes does not fit format 2")
        z = comp.compress(payload)
        f = filters(part) if filters is not None else b""
        rows.append((offset, len(z), hi - lo, int(part.ts[0]), int(part.ts[-1]),
                     len(payload), part.nbytes, zlib.crc32(z), len(f)))
        parts.append(z)
        filter_parts.append(f)
        offset += len(z)
        lo = hi
    table = np.array(rows, dtype=_BLOCK)
    footer = b"".join([
        _str(tenant.encode()), _str(labels.encode()), _str(log_pos),
        bytes([_CODEC_ZSTD, dict_kind, 0, 0]), _U32.pack(dict_id), _str(dict_bytes),
        _U32.pack(len(rows)), table.tobytes(), *filter_parts, _str(b""),
    ])
    head = _TRAILER.pack(offset, len(footer), VERSION, 0, 0, TRAILER_MAGIC)[:16]
    crc = zlib.crc32(head, zlib.crc32(footer))
    parts += [footer, _TRAILER.pack(offset, len(footer), VERSION, 0, crc, TRAILER_MAGIC)]
    data = b"".join(parts)
    return data, ChunkMeta(n, int(block.ts[0]), int(block.ts[-1]), block.nbytes, len(data))


def train_dictionary(block: EntryBlock, size: int = 32 << 10, level: int = 17,
                     sample_bytes: int = 1 << 20) -> zstandard.ZstdCompressionDict:
    """A zstd dictionary of `size` bytes trained on lines of `block` spread over it (about
    `sample_bytes` of them), with fixed fastcover parameters: zstd's search for the best
    parameters costs ~5x more for the same dictionary. ZstdError when zstd cannot train
    one (too few or too small lines)."""
    step = max(1, block.nbytes // sample_bytes)
    lines: list[bytes | bytearray | memoryview] = [*block.lines()[::step]]
    return zstandard.train_dictionary(size, lines, k=1024, d=8, f=20, accel=1, level=level)


def _str(b: bytes) -> bytes:
    return _U32.pack(len(b)) + b


# --- reading -----------------------------------------------------------------------------

Read = Callable[[int, int], bytes]  # (offset, length) -> those bytes of the file


def read_footer(read: Read, size: int, tail_bytes: int = TAIL_BYTES) -> Footer:
    """The footer of a chunk of `size` bytes (format 1 or 2) through range reads: one of
    the tail, a second only when the footer is larger than that (or, for format 1, to
    read its header). ChunkError when it does not check out."""
    if size < len(HEADER) + TRAILER_SIZE:
        raise ChunkError(f"chunk too short ({size} bytes)")
    first = max(0, size - tail_bytes)
    tail = read(first, size - first)
    if len(tail) != size - first:
        raise ChunkError(f"chunk shorter than {size} bytes")
    if tail.endswith(TRAILER_MAGIC) and size >= len(HEADER) + TRAILER_SIZE:
        try:
            return _footer_v2(tail, first, size, read)
        except ChunkError:
            head = tail[:V1_HEADER_SIZE] if first == 0 else read(0, V1_HEADER_SIZE)
            if head[: len(MAGIC) + 1] != MAGIC + b"\x01":
                raise
            # A format-1 chunk whose last bytes happen to read as the magic: read as one.
    head = tail[:V1_HEADER_SIZE] if first == 0 else read(0, V1_HEADER_SIZE)
    if head[: len(MAGIC)] == MAGIC and len(head) > len(MAGIC) and head[len(MAGIC)] == VERSION:
        raise ChunkError("format-2 chunk without its trailer")
    n, mint, maxt, raw_len, crc = read_header(head)
    return Footer(1, size, (BlockInfo(0, V1_HEADER_SIZE, size - V1_HEADER_SIZE, n, mint,
                                      maxt, raw_len, raw_len - 12 * n, crc),))


def footer_of(data: bytes) -> Footer:
    """The footer of a whole chunk held in memory."""
    view = memoryview(data)
    return read_footer(lambda off, length: bytes(view[off : off + length]), len(data))


def _footer_v2(tail: bytes, first: int, size: int, read: Read) -> Footer:
    off, length, version, flags, crc, _magic = _TRAILER.unpack_from(tail, len(tail) -
                                                                     TRAILER_SIZE)
    if off < len(HEADER) or off + length + TRAILER_SIZE != size:
        raise ChunkError(f"chunk trailer places its footer at {off} ({length} bytes) in a "
                         f"file of {size}")
    if off >= first:
        footer = tail[off - first : off - first + length]
    else:
        footer = read(off, length)
        if len(footer) != length:
            raise ChunkError("chunk shorter than its trailer says")
    trailer = tail[len(tail) - TRAILER_SIZE :]
    if zlib.crc32(trailer[:16], zlib.crc32(footer)) != crc:
        raise ChunkError("chunk footer checksum mismatch")
    if version != VERSION or flags:
        raise ChunkError(f"chunk format version {version} (flags {flags}) is not supported")
    try:
        return _parse_footer(memoryview(footer), off, size)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ChunkError):
            raise
        raise ChunkError(f"chunk footer cannot be read: {exc}") from exc


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ChunkError("chunk footer cut short")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def bytes_(self) -> bytes:
        return bytes(self.take(self.u32()))


def _parse_footer(buf: memoryview, footer_off: int, size: int) -> Footer:
    c = _Cursor(buf)
    tenant = c.bytes_().decode()
    labels = c.bytes_().decode()
    log_pos = c.bytes_()
    codec, dict_kind, r1, r2 = bytes(c.take(4))
    if codec != _CODEC_ZSTD or dict_kind not in (DICT_NONE, DICT_ZSTD, DICT_RAW) or r1 or r2:
        raise ChunkError(f"chunk codec {codec} / dictionary kind {dict_kind} unknown")
    dict_id = c.u32()
    dictionary = c.bytes_()
    if (dict_kind == DICT_NONE) != (not dictionary):
        raise ChunkError("chunk dictionary kind and dictionary do not agree")
    nb = c.u32()
    if nb < 1:
        raise ChunkError("chunk has no blocks")
    table = np.frombuffer(c.take(nb * _BLOCK.itemsize), dtype=_BLOCK, count=nb)
    ends = table["offset"] + table["length"]
    if int(table["offset"][0]) != len(HEADER) or bool((table["offset"][1:] != ends[:-1]).any()) \
            or int(ends[-1]) != footer_off:
        raise ChunkError("chunk blocks do not tile the file")
    if bool((table["n"] < 1).any()) or bool((table["mint"] > table["maxt"]).any()) \
            or bool((table["maxt"][:-1] >= table["mint"][1:]).any()) \
            or bool((table["raw"] < 12 * table["n"].astype(np.int64)
                     + table["line_bytes"]).any()):
        raise ChunkError("chunk block table is inconsistent")
    blocks = []
    for i, row in enumerate(table.tolist()):
        off, length, n, mint, maxt, raw, line_bytes, crc, flen = row
        blocks.append(BlockInfo(i, off, length, n, mint, maxt, raw, line_bytes, crc,
                                bytes(c.take(flen))))
    extension = c.bytes_()
    if c.pos != len(buf):
        raise ChunkError("chunk footer has bytes after its last field")
    return Footer(VERSION, size, tuple(blocks), tenant, labels, log_pos, dict_kind, dict_id,
                  dictionary, extension)


def byte_ranges(blocks: Sequence[BlockInfo]) -> list[tuple[int, int]]:
    """(offset, length) reads for `blocks` (file order), neighbours merged into one."""
    out: list[tuple[int, int]] = []
    for b in blocks:
        if out and out[-1][0] + out[-1][1] == b.offset:
            out[-1] = (out[-1][0], out[-1][1] + b.length)
        else:
            out.append((b.offset, b.length))
    return out


def decode_blocks(footer: Footer, blocks: Sequence[BlockInfo], buf: bytes | memoryview,
                  buf_offset: int, labels: dict[str, str]) -> list[EntryBlock]:
    """The entries of `blocks`, one EntryBlock each (ascending, time-disjoint), from `buf`
    holding the file's bytes from `buf_offset` on (one of `byte_ranges`, or the whole
    file). Each block's lines stay in its decompressed payload (no copy). ChunkError
    when a block's checksum or contents do not check out."""
    view = memoryview(buf)
    d = footer.decompressor()
    out = []
    for b in blocks:
        lo = b.offset - buf_offset
        if lo < 0 or lo + b.length > len(view):
            raise ValueError(f"block {b.index} ({b.offset}+{b.length}) is not in the "
                             f"buffer ({buf_offset}+{len(view)})")
        z = view[lo : lo + b.length]
        if zlib.crc32(z) != b.crc:
            raise ChunkError(f"chunk block {b.index} checksum mismatch")
        e = decode_payload(z, b.n, b.mint, b.raw, labels, d)
        if int(e.ts[-1]) != b.maxt:
            raise ChunkError(f"chunk block {b.index} ends at {int(e.ts[-1])}, its footer "
                             f"says {b.maxt}")
        out.append(e)
    return out


def read_blocks(read: Read, footer: Footer, start: int, end: int,
                labels: dict[str, str]) -> list[EntryBlock]:
    """The blocks of a chunk overlapping [start, end), one read per run of neighbouring
    blocks (`read` is the object store's range read)."""
    out: list[EntryBlock] = []
    wanted = footer.overlapping(start, end)
    for off, length in byte_ranges(wanted):
        data = read(off, length)
        if len(data) != length:
            raise ChunkError("chunk shorter than its footer says")
        out += decode_blocks(footer, [b for b in wanted if off <= b.offset < off + length],
                             data, off, labels)
    return out


def decode_chunk(data: bytes, labels: dict[str, str]) -> EntryBlock:
    """Every entry of a whole chunk file (format 1 or 2), every byte checked: one block
    (the blocks of a format-2 chunk are joined)."""
    footer = footer_of(data)
    if footer.version == VERSION and data[: len(HEADER)] != HEADER:
        raise ChunkError("chunk header damaged")
    blocks = decode_blocks(footer, footer.blocks, data, 0, labels)
    return blocks[0] if len(blocks) == 1 else EntryBlock.concat(blocks)
