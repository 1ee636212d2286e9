"""The fast path for JSON pushes: all entries of all stream objects checked and converted
as whole columns, then cut back into streams.

Fluent Bit sends one stream object per record, so per-stream Python work, not per-entry
work, is what costs there. Any problem returns None and the stream-by-stream decoder in
_json.py runs instead, to name the exact place of the error.
"""

from __future__ import annotations

from itertools import accumulate, chain
from operator import methodcaller
from typing import Any

from sluiceway.model import Metadata, StreamBatch
from sluiceway.wire._checks import check_label_names, check_metadata, parse_ts_strings
from sluiceway.wire._errors import WireError

_GET_LABELS = methodcaller("get", "stream")
_GET_VALUES = methodcaller("get", "values")
_NONE = type(None)


def decode_columns(streams: list[Any]) -> list[StreamBatch] | None:
    if not streams:
        return []
    if set(map(type, streams)) != {dict}:
        return None
    labels = list(map(_GET_LABELS, streams))
    values = list(map(_GET_VALUES, streams))
    if set(map(type, labels)) != {dict} or not set(map(type, values)) <= {list, _NONE}:
        return None
    values = [v or () for v in values]  # "values": null is an empty stream, as in Loki
    entries = list(chain.from_iterable(values))
    try:
        if not _labels_ok(labels) or set(map(type, entries)) - {list}:
            return None  # also null entries: rare, left to the exact path
        columns = _columns(entries)
    except WireError:
        return None
    if columns is None:
        return None
    ts, lines, metadata = columns
    ends = list(accumulate(map(len, values)))
    starts = [0, *ends[:-1]]
    if metadata is None:
        return [StreamBatch(lbls, ts[a:b], lines[a:b])
                for lbls, a, b in zip(labels, starts, ends, strict=True)]
    mds = [metadata[a:b] for a, b in zip(starts, ends, strict=True)]
    return [StreamBatch(lbls, ts[a:b], lines[a:b], md if any(md) else None)
            for lbls, a, b, md in zip(labels, starts, ends, mds, strict=True)]


def _labels_ok(labels: list[dict[str, Any]]) -> bool:
    """Validate each distinct label set once (pushes repeat a few of them)."""
    try:
        distinct = set(map(tuple, map(dict.items, labels)))
    except TypeError:  # an unhashable (non-string) value
        return False
    for items in distinct:
        check_label_names("stream", dict(items))
    return True


def _columns(entries: list[list[Any]]) -> tuple[
        list[int], list[str], list[Metadata | None] | None] | None:
    if not entries:
        return [], [], None
    sizes = set(map(len, entries))
    if not sizes <= {2, 3}:  # elements after the third: the exact path drops them
        return None
    if sizes == {2}:
        stamps, lines = zip(*entries, strict=True)
        metadata = None
    else:
        stamps = tuple(e[0] for e in entries)
        lines = tuple(e[1] for e in entries)
        metadata = [check_metadata("", e[2]) if len(e) == 3 else None for e in entries]
    if set(map(type, lines)) != {str}:
        return None
    return parse_ts_strings("", stamps), list(lines), metadata
