"""WAL record payload: one validated push, column-wise, so replay needs no parsing per line.

Layout (little-endian): tenant str | u32 n_streams | per stream:
  labels str | u32 n | i64 ts[n] | u32 len[n] | blob | metadata str ("" when none)
where `str` is u32 length + UTF-8 bytes.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

from sluiceway.model import EntryBlock, format_labels, parse_labels

_U32 = struct.Struct("<I")


def _put_str(out: list[bytes], s: bytes) -> None:
    out.append(_U32.pack(len(s)))
    out.append(s)


def encode_record(tenant: str, blocks: list[EntryBlock]) -> bytes:
    out: list[bytes] = []
    _put_str(out, tenant.encode())
    out.append(_U32.pack(len(blocks)))
    for b in blocks:
        _put_str(out, format_labels(b.labels).encode())
        n = len(b)
        out.append(_U32.pack(n))
        out.append(b.ts.astype("<i8", copy=False).tobytes())
        out.append(np.diff(b.offsets).astype("<u4").tobytes())
        out.append(b.blob[int(b.offsets[0]) : int(b.offsets[-1])])
        md = orjson.dumps(b.metadata) if b.metadata is not None else b""
        _put_str(out, md)
    return b"".join(out)


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ValueError("record truncated")
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def str_(self) -> bytes:
        return bytes(self.take(self.u32()))


def decode_record(payload: bytes) -> tuple[str, list[EntryBlock]]:
    """The blocks of a record; their lines stay in `payload` (offsets point into it), so
    replay and the server's hand-off from its workers copy no line."""
    r = _Reader(payload)
    tenant = r.str_().decode()
    blocks: list[EntryBlock] = []
    for _ in range(r.u32()):
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
        blocks.append(EntryBlock(labels, ts, payload, offsets, metadata))
    return tenant, blocks
