"""Decode many serialized google.protobuf.Timestamp messages at once with numpy.

Reading `entry.timestamp.seconds` costs a Python wrapper object per entry; instead the
fast path gets each Timestamp as raw bytes and decodes them all here in a few array
operations. A canonical Timestamp is one of: empty, seconds, nanos, or seconds then
nanos (tag 0x08 / 0x10, each followed by a varint). Anything else (unknown or repeated
fields, truncation, values that would overflow int64 nanoseconds) returns None and the
caller takes the exact path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

NS = 1_000_000_000
_TAG_SECONDS = 0x08  # field 1, varint
_TAG_NANOS = 0x10  # field 2, varint
# |seconds| up to this cannot overflow int64 once scaled to ns and nanos added.
SAFE_SECONDS = (2**63 - 1) // NS - 1

I64 = npt.NDArray[np.int64]


def decode_timestamps(stamps: Sequence[bytes]) -> list[int] | None:
    """Unix ns of each serialized Timestamp (b"" is 0), or None if the fast rules fail."""
    n = len(stamps)
    blob = np.frombuffer(b"".join(stamps), dtype=np.uint8)
    sizes = np.fromiter(map(len, stamps), dtype=np.int64, count=n)
    ts = decode_timestamp_blob(blob, sizes)
    return None if ts is None else ts.tolist()


def decode_timestamp_blob(blob: npt.NDArray[np.uint8], sizes: I64) -> I64 | None:
    """The same for Timestamps laid end to end in `blob`, `sizes[i]` bytes each."""
    if blob.size == 0:
        return np.zeros(sizes.size, dtype=np.int64)
    ends = np.cumsum(sizes)
    # Each message must end a varint (no continuation bit on its last byte), so varints
    # never straddle messages and truncated ones are caught.
    if np.any(blob[ends[sizes > 0] - 1] >= 0x80):
        return None
    is_last = blob < 0x80
    values = _varints(blob, is_last)
    if values is None:
        return None
    # Varints before each message and in it, from a running count of varint ends.
    done = np.zeros(blob.size + 1, dtype=np.int64)
    np.cumsum(is_last, out=done[1:])
    first = done[ends - sizes]
    count = done[ends] - first
    return _fields(values, first, count)


def _varints(blob: npt.NDArray[np.uint8], is_last: npt.NDArray[np.bool_]) -> I64 | None:
    """Every base-128 varint in `blob` (tags included), in order, as int64 (two's
    complement, as protobuf stores negative int64); None if one is over 10 bytes."""
    last = np.flatnonzero(is_last)
    starts = np.empty_like(last)
    starts[0] = 0
    starts[1:] = last[:-1] + 1
    pos = np.arange(blob.size) - np.repeat(starts, last - starts + 1)
    if int(pos.max()) > 9 or np.any(blob[pos == 9] > 1):
        return None
    groups = (blob & 0x7F).astype(np.uint64) << (7 * pos).astype(np.uint64)
    values: I64 = np.add.reduceat(groups, starts).view(np.int64)
    return values


def _fields(values: I64, first: I64, count: I64) -> I64 | None:
    """Seconds and nanos of each message from its 0, 2 or 4 varints."""
    if not np.all((count == 0) | (count == 2) | (count == 4)):
        return None
    top = values.size - 1
    tag1, val1 = values[np.minimum(first, top)], values[np.minimum(first + 1, top)]
    tag2, val2 = values[np.minimum(first + 2, top)], values[np.minimum(first + 3, top)]
    one, two = count == 2, count == 4
    if not (np.all(~one | (tag1 == _TAG_SECONDS) | (tag1 == _TAG_NANOS))
            and np.all(~two | ((tag1 == _TAG_SECONDS) & (tag2 == _TAG_NANOS)))):
        return None
    seconds = np.where((one | two) & (tag1 == _TAG_SECONDS), val1, 0)
    nanos = np.where(two, val2, np.where(one & (tag1 == _TAG_NANOS), val1, 0))
    if nanos.min() < 0 or nanos.max() >= NS or \
            seconds.min() < -SAFE_SECONDS or seconds.max() > SAFE_SECONDS:
        return None
    ts: I64 = seconds * NS + nanos
    return ts
