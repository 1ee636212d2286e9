"""The fast path for protobuf pushes: one C-level attribute walk per entry, no Python
object per timestamp (see LeanPushRequest in push.proto).

It handles what real clients send almost always: UTF-8 text, canonical timestamps, no
structured metadata. Anything else returns None and the exact decoder in _proto.py runs.
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter
from typing import Any

from google.protobuf.message import DecodeError

from sluiceway.model import StreamBatch
from sluiceway.wire import _push_pb2 as pb
from sluiceway.wire._labels import labels_from_string
from sluiceway.wire._stamps import decode_timestamps

_LEAN_FIELDS = attrgetter("timestamp", "line")


def decode_lean(data: bytes | memoryview) -> list[StreamBatch] | None:
    """The common case, about twice as fast: no structured metadata, UTF-8 text,
    canonical timestamps. None sends the request down the exact path."""
    try:
        req: Any = pb.LeanPushRequest.FromString(data)
    except DecodeError:
        return None
    if _has_metadata(data, [len(st.entries) for st in req.streams]):
        return None
    labels = [labels_from_string(st.labels) for st in req.streams]
    columns = [tuple(zip(*map(_LEAN_FIELDS, st.entries), strict=True)) or ((), ())
               for st in req.streams]
    # One numpy pass over every timestamp of the request: per-call overhead dominates
    # when done stream by stream.
    ts = decode_timestamps(list(chain.from_iterable(stamps for stamps, _ in columns)))
    if ts is None:
        return None
    out = []
    start = 0
    for lbls, (stamps, lines) in zip(labels, columns, strict=True):
        out.append(StreamBatch(lbls, ts[start:start + len(stamps)], list(lines)))
        start += len(stamps)
    return out


def _has_metadata(data: bytes | memoryview, entry_counts: list[int]) -> bool:
    try:
        probe: Any = pb.MetaProbeRequest.FromString(data)
    except DecodeError:
        return True  # let the exact path decide
    probe.DiscardUnknownFields()
    # Without metadata each stream is tag + length + n empty entries of 2 bytes each.
    empty = sum(1 + _varint_len(2 * n) + 2 * n for n in entry_counts)
    return bool(probe.ByteSize() != empty)


def _varint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)
