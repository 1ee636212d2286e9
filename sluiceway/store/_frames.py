"""Reading framed files (u32 payload length | u32 CRC32 of payload | payload), as the WAL
and the index log write them, so that damage costs only the damaged records.

At a frame that does not check out, the reader first trusts its length: when a valid frame
(or the end of the file) follows exactly there, only that record is skipped. Otherwise it
resynchronises on the next offset where a frame's length fits, its payload looks like one
of this file's records (`plausible`) and its CRC matches. A damaged region that runs to the
end of the file, starting with a frame cut short, is a torn write: a crash interrupted an
append that was never acknowledged.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

HDR = struct.Struct("<II")
_WINDOW = 1 << 20  # offsets examined per numpy pass while resynchronising

# (data, payload offset, payload length) -> could a record of this file start there?
Plausible = Callable[[bytes, int, int], bool]


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes [start, end) that hold no valid frame."""

    start: int
    end: int
    offsets: list[int]  # where each damaged record starts, as far as lengths tell
    payloads: list[bytes] = field(repr=False)  # each one's bytes, for a best-effort count
    torn: bool  # the last append cut short (or never written: zeros) by a crash

    @property
    def records(self) -> int:
        return len(self.offsets)


def frame_end(data: bytes, pos: int) -> int | None:
    """The end of a whole frame with a matching CRC at `pos`, else None. Neither writer
    writes an empty record: zeros (a tail the file system extended but never wrote) are
    damage, not a run of empty frames whose CRC32 happens to be 0."""
    if pos + HDR.size > len(data):
        return None
    length, crc = HDR.unpack_from(data, pos)
    end: int = pos + HDR.size + length
    if not length or end > len(data) or zlib.crc32(memoryview(data)[pos + HDR.size : end]) != crc:
        return None
    return end


def scan(data: bytes, plausible: Plausible,
         prefix: bytes | None = None) -> Iterator[tuple[int, int] | Damage]:
    """(start, end) of each valid frame in order, with a `Damage` for each gap between.

    `prefix`, when every payload starts with it, makes resynchronising a substring search.
    """
    pos = 0
    while pos < len(data):
        end = frame_end(data, pos)
        if end is not None:
            yield pos, end
            pos = end
            continue
        nxt = _resume_at(data, pos, plausible, prefix)
        yield _damage(data, pos, nxt, plausible)
        pos = nxt


def _resume_at(data: bytes, pos: int, plausible: Plausible, prefix: bytes | None) -> int:
    n = len(data)
    if pos + HDR.size <= n:
        length, _ = HDR.unpack_from(data, pos)
        end: int = pos + HDR.size + length
        if end == n or (end < n and frame_end(data, end) is not None):
            return end  # the length was right: only this record's bytes are bad
    cands = _prefixed(data, pos + 1, prefix) if prefix else _fitting(data, pos + 1)
    for c in cands:
        length, _ = HDR.unpack_from(data, c)
        if plausible(data, c + HDR.size, length) and frame_end(data, c) is not None:
            return c
    return n


def _prefixed(data: bytes, start: int, prefix: bytes) -> Iterator[int]:
    i = data.find(prefix, start + HDR.size)
    while i >= 0:
        yield i - HDR.size
        i = data.find(prefix, i + 1)


def _fitting(data: bytes, start: int) -> Iterator[int]:
    """Offsets from `start` whose u32 length fits in the file, a window at a time."""
    n = len(data)
    last = n - HDR.size  # the last offset a header fits at
    a = start
    while a <= last:
        b = min(last + 1, a + _WINDOW)
        raw = np.frombuffer(data, dtype=np.uint8, count=b - a + 3, offset=a).astype(np.int64)
        lengths = raw[:-3] | raw[1:-2] << 8 | raw[2:-1] << 16 | raw[3:] << 24
        offs = np.arange(a, b, dtype=np.int64)
        yield from offs[offs + HDR.size + lengths <= n].tolist()
        a = b


def _damage(data: bytes, start: int, end: int, plausible: Plausible) -> Damage:
    """Walk the region by its lengths while they stay inside it and look like records."""
    offsets, payloads = [start], []
    o = start
    while True:
        length = HDR.unpack_from(data, o)[0] if o + HDR.size <= end else -1
        nxt = o + HDR.size + length
        if length < 0 or nxt >= end or not plausible(data, o + HDR.size, length):
            payloads.append(data[o + HDR.size : end])
            break
        payloads.append(data[o + HDR.size : nxt])
        offsets.append(o := nxt)
    first = HDR.unpack_from(data, start)[0] if start + HDR.size <= len(data) else -1
    torn = end == len(data) and (first < 0 or start + HDR.size + first > len(data)
                                 or not any(data[start:end]))
    return Damage(start, end, offsets, payloads, torn)
