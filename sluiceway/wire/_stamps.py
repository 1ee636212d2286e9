"""Decode many serialized google.protobuf.Timestamp messages at once with numpy.

Reading `entry.timestamp.seconds` costs a Python wrapper object per entry; instead the
fast path gets each Timestamp as raw bytes and decodes them all here in a few array
operations. Anything unusual (unknown fields, a repeated field, truncation, values that
would overflow int64 nanoseconds) returns None and the caller takes the exact path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

NS = 1_000_000_000
_TAG_SECONDS = 0x08  # field 1, varint
_TAG_NANOS = 0x10  # field 2, varint
# |seconds| below this cannot overflow int64 once scaled to ns and nanos added.
_SAFE_SECONDS = (2**63 - 1) // NS - 1

U64 = npt.NDArray[np.uint64]


def decode_timestamps(stamps: Sequence[bytes]) -> list[int] | None:
    """Unix ns of each serialized Timestamp (b"" is 0), or None if the fast rules fail."""
    n = len(stamps)
    blob = np.frombuffer(b"".join(stamps), dtype=np.uint8)
    if blob.size == 0:
        return [0] * n
    # Message boundaries must fall on varint ends: a message's last byte has no
    # continuation bit (this also rules out truncated varints).
    sizes = np.fromiter(map(len, stamps), dtype=np.int64, count=n)
    ends = np.cumsum(sizes)
    nonempty = sizes > 0
    if np.any(blob[ends[nonempty] - 1] >= 0x80):
        return None
    parsed = _varints(blob)
    if parsed is None or parsed[0].size % 2:  # must be tag, value, tag, value, ...
        return None
    values, last_bytes = parsed
    owner = np.searchsorted(ends, last_bytes, side="right")  # message index of each varint
    if np.any(owner[0::2] != owner[1::2]):  # a tag and its value in different messages
        return None
    return _combine(n, values[0::2], values[1::2], owner[1::2])


def _varints(blob: npt.NDArray[np.uint8]) -> tuple[U64, npt.NDArray[np.intp]] | None:
    """Every base-128 varint in `blob` (tags included) and the index of its last byte;
    None if one is longer than a 64-bit varint can be."""
    last = np.flatnonzero(blob < 0x80)
    starts = np.empty_like(last)
    starts[0] = 0
    starts[1:] = last[:-1] + 1
    pos = np.arange(blob.size) - np.repeat(starts, last - starts + 1)
    if int(pos.max()) > 9 or np.any(blob[pos == 9] > 1):
        return None
    groups = (blob & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    return np.add.reduceat(groups, starts), last


def _combine(n: int, tags: U64, vals: U64, owner: npt.NDArray[np.intp]) -> list[int] | None:
    is_sec, is_ns = tags == _TAG_SECONDS, tags == _TAG_NANOS
    if not np.all(is_sec | is_ns):
        return None
    # Canonical encoders write each field at most once, so per field the owning message
    # index strictly increases; repeats take the exact path.
    if np.any(np.diff(owner[is_sec]) <= 0) or np.any(np.diff(owner[is_ns]) <= 0):
        return None
    seconds = np.zeros(n, dtype=np.int64)
    nanos = np.zeros(n, dtype=np.int64)
    seconds[owner[is_sec]] = vals[is_sec].view(np.int64)
    nanos[owner[is_ns]] = vals[is_ns].view(np.int64)
    if nanos.min() < 0 or nanos.max() >= NS or \
            seconds.min() < -_SAFE_SECONDS or seconds.max() > _SAFE_SECONDS:
        return None
    ts: list[int] = (seconds * NS + nanos).tolist()
    return ts
