"""PushRecord: one validated push of one tenant, the unit the ingest log carries.

A record is made of per-stream blocks; any subset of its streams is itself a valid record
(`subset`), so a record can be split by stream (per partition) without touching a line.
Decoding copies no line: each block's `blob` is the encoded record and its offsets point
into it, so the server's hand-off from its workers and the WAL replay cost no Python work
per line.

Layout (little-endian), version 1:
  b"SLR" | u8 version | tenant str | u32 n_streams | per stream: u32 size | stream
  stream = labels str | u32 n | i64 ts[n] | u32 len[n] | lines | metadata str
Version 0 (the WAL payload before records had a version) has no magic and no stream sizes:
  tenant str | u32 n_streams | per stream: stream
`str` is u32 length + UTF-8 bytes; metadata is the JSON of the block's list ("" when none).
A version 0 record starts with its tenant's length (1..1024: bytes 2 and 3 are zero), so
it never starts with the magic.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import orjson

from sluiceway.model._block import EntryBlock
from sluiceway.model._labels import format_labels, parse_labels

MAGIC = b"SLR"
VERSION = 1
_U32 = struct.Struct("<I")
_HEAD = len(MAGIC) + 1


class RecordError(ValueError):
    """Bytes that are not a push record this release can read."""


def _str(s: bytes) -> bytes:
    return _U32.pack(len(s)) + s


def _encode_stream(b: EntryBlock) -> list[bytes]:
    n = len(b)
    md = orjson.dumps(b.metadata) if b.metadata is not None else b""
    return [_str(format_labels(b.labels).encode()), _U32.pack(n),
            b.ts.astype("<i8", copy=False).tobytes(),
            np.diff(b.offsets).astype("<u4").tobytes(),
            b.blob[int(b.offsets[0]) : int(b.offsets[-1])] if n else b"", _str(md)]


@dataclass(slots=True, eq=False)
class PushRecord:
    """`blocks`: one per stream (labels set), entries in push order."""

    tenant: str
    blocks: list[EntryBlock]
    _raw: bytes | None = field(default=None, repr=False, compare=False)
    _crc: int | None = field(default=None, repr=False, compare=False)
    # (start, end) of each stream's bytes in `_raw` (version 1 only)
    _spans: list[tuple[int, int]] | None = field(default=None, repr=False, compare=False)

    @property
    def lines(self) -> int:
        return sum(len(b) for b in self.blocks)

    @property
    def nbytes(self) -> int:
        """Bytes of log lines."""
        return sum(b.nbytes for b in self.blocks)

    def encode(self) -> bytes:
        """The record's bytes (version 1), made once."""
        if self._raw is None or self._spans is None:
            out = [MAGIC, bytes([VERSION]), _str(self.tenant.encode()),
                   _U32.pack(len(self.blocks))]
            spans: list[tuple[int, int]] = []
            pos = sum(map(len, out))
            for b in self.blocks:
                parts = _encode_stream(b)
                size = sum(map(len, parts))
                out.append(_U32.pack(size))
                out += parts
                spans.append((pos + 4, pos + 4 + size))
                pos += 4 + size
            self._raw, self._spans, self._crc = b"".join(out), spans, None
        return self._raw

    @property
    def crc32(self) -> int:
        """CRC32 of `encode()` (the WAL's frame checksum), made once."""
        if self._crc is None:
            self._crc = zlib.crc32(self.encode())
        return self._crc

    def subset(self, keep: list[int]) -> PushRecord:
        """A record of the streams at indexes `keep` (in that order); their encoded bytes
        are reused when this record has them, so no line is encoded again."""
        blocks = [self.blocks[i] for i in keep]
        if self._raw is None or self._spans is None:
            return PushRecord(self.tenant, blocks)
        raw = memoryview(self._raw)
        head = [MAGIC, bytes([VERSION]), _str(self.tenant.encode()), _U32.pack(len(keep))]
        out: list[bytes | memoryview] = list(head)
        spans: list[tuple[int, int]] = []
        pos = sum(map(len, head))
        for i in keep:
            a, b = self._spans[i]
            out += [_U32.pack(b - a), raw[a:b]]
            spans.append((pos + 4, pos + 4 + b - a))
            pos += 4 + b - a
        return PushRecord(self.tenant, blocks, b"".join(out), None, spans)

    @staticmethod
    def decode(payload: bytes, crc: int | None = None) -> PushRecord:
        """The record in `payload` (any version this release reads); `crc` is its CRC32
        when the caller has it. Raises RecordError for bytes that are not a record."""
        try:
            return _decode(payload, crc)
        except (ValueError, KeyError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
            if isinstance(exc, RecordError):
                raise
            raise RecordError(f"not a push record: {exc}") from None


def looks_like_record(data: bytes, start: int, length: int) -> bool:
    """Could a record of `length` bytes start at `data[start:]`? (Its tenant's length is
    sane.) For readers resynchronising after damage."""
    if length < 8 or start + 4 > len(data):
        return False
    if data.startswith(MAGIC, start):
        if start + _HEAD + 4 > len(data) or length < _HEAD + 8:
            return False
        start, length = start + _HEAD, length - _HEAD
    n = int.from_bytes(data[start : start + 4], "little")
    return 0 < n <= 1024 and n + 8 <= length


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise RecordError("record truncated")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def str_(self) -> bytes:
        return bytes(self.take(self.u32()))


def _decode(payload: bytes, crc: int | None) -> PushRecord:
    r = _Reader(payload)
    version = 0
    if payload[:3] == MAGIC:
        version = payload[3] if len(payload) > 3 else -1
        if version != VERSION:
            raise RecordError(f"push record version {version} is not one this release "
                              f"reads (0 and {VERSION})")
        r.pos = _HEAD
    tenant = r.str_().decode()
    blocks: list[EntryBlock] = []
    spans: list[tuple[int, int]] | None = [] if version else None
    for _ in range(r.u32()):
        if spans is not None:
            size = r.u32()
            start = r.pos
            blocks.append(_stream(r, payload))
            if r.pos != start + size:
                raise RecordError("stream size does not match its contents")
            spans.append((start, r.pos))
        else:
            blocks.append(_stream(r, payload))
    if r.pos != len(payload):
        raise RecordError(f"{len(payload) - r.pos} bytes after the last stream")
    if spans is None:  # version 0: encode() makes version 1 bytes when asked
        return PushRecord(tenant, blocks)
    return PushRecord(tenant, blocks, payload, crc, spans)


def _stream(r: _Reader, payload: bytes) -> EntryBlock:
    labels = parse_labels(r.str_().decode())
    n = r.u32()
    ts = np.frombuffer(r.take(8 * n), dtype="<i8").astype(np.int64)
    lengths = np.frombuffer(r.take(4 * n), dtype="<u4")
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = r.pos
    np.cumsum(lengths, out=offsets[1:])
    offsets[1:] += r.pos
    r.take(int(offsets[-1] - offsets[0]))
    md = r.str_()
    metadata = orjson.loads(md) if md else None
    if metadata is not None and (not isinstance(metadata, list) or len(metadata) != n):
        raise RecordError("metadata does not match the stream's entries")
    return EntryBlock(labels, ts, payload, offsets, metadata)
