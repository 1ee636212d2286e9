"""Chunk files: one stream's entries over a time span, zstd-compressed, checksummed.

File layout (little-endian):
  magic b"SLWC" | u8 format version | u8 flags | u16 reserved | u32 n | i64 mint | i64 maxt
  | u64 raw_len | u32 CRC32 of the compressed payload | zstd(payload)
payload: shuffled i64 ts-differences[n] | shuffled u32 line lengths[n] | lines blob |
         metadata JSON (may be empty)
Timestamps are stored as differences from the previous entry (the first from `mint`), and
both number columns are byte-shuffled (all first bytes, then all second bytes, ...): the
high bytes are almost all zero and compress to nearly nothing.
"""

from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass

import numpy as np
import orjson
import zstandard

from sluiceway.model import EntryBlock

MAGIC = b"SLWC"
CHUNK_VERSION = 1
_HDR = struct.Struct("<4sBBHIqqQI")
HEADER_SIZE = _HDR.size  # 40

_local = threading.local()


class ChunkError(ValueError):
    """A chunk file that is not ours, of another version, or damaged."""


def cctx(level: int) -> zstandard.ZstdCompressor:
    """This thread's compressor at `level` (without a dictionary)."""
    key = f"c{level}"
    c = getattr(_local, key, None)
    if c is None:
        c = zstandard.ZstdCompressor(level=level)
        setattr(_local, key, c)
    return c


def dctx() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (without a dictionary)."""
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    n: int
    mint: int
    maxt: int
    raw_bytes: int
    size: int


def encode_payload(block: EntryBlock) -> bytes:
    """The uncompressed payload of `block` (n >= 1, ascending): shuffled ts differences
    (the first one 0: it is the block's `mint`), shuffled line lengths, the lines, the
    metadata JSON. Shared by chunk formats 1 and 2 (one payload per block there)."""
    n = len(block)
    ts, offsets = block.ts, block.offsets
    # Differences by subtraction: np.diff(prepend=) costs more than the rest of a small
    # chunk (shutdown writes one per stream, often of a line or two).
    deltas = np.empty(n, dtype="<i8")
    deltas[0] = 0  # ts[0] is mint
    np.subtract(ts[1:], ts[:-1], out=deltas[1:])
    parts: list[bytes | memoryview] = [
        _shuffle(deltas),
        _shuffle((offsets[1:] - offsets[:-1]).astype("<u4")),
        # A view, not a slice: the lines are copied once, into the payload.
        memoryview(block.blob)[int(block.offsets[0]) : int(block.offsets[-1])],
        orjson.dumps(block.metadata) if block.metadata is not None else b"",
    ]
    return b"".join(parts)


def encode_chunk(block: EntryBlock, level: int = 3) -> tuple[bytes, ChunkMeta]:
    n = len(block)
    mint, maxt = int(block.ts[0]), int(block.ts[-1])
    payload = encode_payload(block)
    z = cctx(level).compress(payload)
    hdr = _HDR.pack(MAGIC, CHUNK_VERSION, 0, 0, n, mint, maxt, len(payload), zlib.crc32(z))
    data = hdr + z
    return data, ChunkMeta(n, mint, maxt, block.nbytes, len(data))


def read_header(data: bytes) -> tuple[int, int, int, int, int]:
    """(n, mint, maxt, raw_len, crc) of a version-1 chunk's first `HEADER_SIZE` bytes."""
    if len(data) < _HDR.size:
        raise ChunkError("chunk too short")
    magic, version, _f, _r, n, mint, maxt, raw_len, crc = _HDR.unpack_from(data, 0)
    if magic != MAGIC:
        raise ChunkError("not a Sluiceway chunk")
    if version != CHUNK_VERSION:
        raise ChunkError(f"chunk format version {version} is not supported (expected "
                         f"{CHUNK_VERSION})")
    return n, mint, maxt, raw_len, crc


def decode_chunk(data: bytes, labels: dict[str, str]) -> EntryBlock:
    n, mint, _maxt, raw_len, crc = read_header(data)
    z = memoryview(data)[_HDR.size :]
    if zlib.crc32(z) != crc:
        raise ChunkError("chunk checksum mismatch")
    return decode_payload(z, n, mint, raw_len, labels, dctx())


def decode_payload(z: bytes | memoryview, n: int, mint: int, raw_len: int,
                   labels: dict[str, str], dctx: zstandard.ZstdDecompressor) -> EntryBlock:
    """Decompress one checked payload (`encode_payload`, one zstd frame) of `n` lines.
    Lines stay in the decompressed payload: the block's blob is that buffer, no copy.
    The counts come from outside the checksummed bytes: every way they can be wrong is a
    ChunkError, never an exception of numpy, zstd or orjson."""
    try:
        payload = dctx.decompress(z, max_output_size=raw_len)
        if n < 1 or len(payload) != raw_len or 12 * n > raw_len:
            raise ChunkError(f"chunk payload is {len(payload)} bytes, the header says "
                             f"{raw_len} for {n} lines")
        ts = np.cumsum(_unshuffle(payload, 0, n, "<i8"), dtype=np.int64) + mint
        lengths = _unshuffle(payload, 8 * n, n, "<u4")
        offsets = np.empty(n + 1, dtype=np.int64)
        offsets[0] = 12 * n  # lines are addressed inside the payload, no copy
        np.cumsum(lengths, out=offsets[1:])
        offsets[1:] += 12 * n
        end = int(offsets[-1])
        if end > len(payload):
            raise ChunkError("chunk line lengths run past its payload")
        md = payload[end:]
        metadata = orjson.loads(md) if md else None
        if metadata is not None and (not isinstance(metadata, list) or len(metadata) != n):
            raise ChunkError("chunk metadata does not match its lines")
    except (zstandard.ZstdError, orjson.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ChunkError):
            raise
        raise ChunkError(f"chunk payload cannot be decoded: {exc}") from exc
    return EntryBlock(labels, ts, payload, offsets, metadata)


def _shuffle(a: np.ndarray) -> bytes:
    """Bytes grouped by significance: byte 0 of every value, then byte 1, ..."""
    return a.view(np.uint8).reshape(len(a), a.itemsize).T.tobytes()


def _unshuffle(buf: bytes, offset: int, n: int, dtype: str) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    raw = np.frombuffer(buf, dtype=np.uint8, count=n * size, offset=offset)
    return raw.reshape(size, n).T.copy().view(dtype).reshape(n)

