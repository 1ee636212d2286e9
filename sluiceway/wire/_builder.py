"""One push body from pieces of streams, each piece encoded once; and the 413 split.

A shipper collects pieces (a stream's labels, stamps, lines as UTF-8 bytes) from many
producers. Protobuf: each piece's entries are serialized when it is added, and pieces of
the same stream become one stream object by joining their serialized entries (repeated
fields concatenate) — the lines are never merged into new lists, never decoded to `str`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Literal, TypeVar

import cramjam
import numpy as np
import numpy.typing as npt
import orjson

from sluiceway.model import Metadata, StreamBatch, format_labels
from sluiceway.wire._encode_proto import encode_raw_entries
from sluiceway.wire._errors import WireError
from sluiceway.wire._json import encode_push_json
from sluiceway.wire._proto import encode_entries_with_metadata, encode_push_protobuf
from sluiceway.wire._push import decode_push
from sluiceway.wire._text import scrub

PushFormat = Literal["protobuf", "json"]
CONTENT_TYPES: dict[str, str] = {"protobuf": "application/x-protobuf",
                                 "json": "application/json"}
Stamps = npt.NDArray[np.int64] | Sequence[int]
R = TypeVar("R", bound=Sized)


def utf8_lines(raw: list[bytes], block: bytes | None = None) -> list[bytes]:
    """`raw` with every line valid UTF-8 (invalid bytes become U+FFFD, as Go's clients
    and Loki show them). `block`, the bytes the lines were split from, is checked at
    once instead when given: the common case costs one pass over ASCII text."""
    if block is not None and (block.isascii() or _valid(block)):
        return raw
    out = []
    for line in raw:
        if line.isascii() or _valid(line):
            out.append(line)
        else:
            out.append(line.decode("utf-8", "replace").encode())
    return out


def utf8_encode(lines: list[str]) -> list[bytes]:
    """`str` lines as UTF-8 bytes; a lone surrogate (not encodable) becomes U+FFFD."""
    try:
        return list(map(str.encode, lines))
    except UnicodeEncodeError:
        return [scrub(line).encode() for line in lines]


def _valid(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class PushBuilder:
    """Collects pieces of streams into one Loki push body (`protobuf` + snappy, or JSON).

    `add(labels, ts, lines)`: lines as UTF-8 bytes (see `utf8_lines`), stamps in Unix ns;
    `metadata`, one per line (None: none), the entries' structured metadata.
    `body()` builds the request body; `lines` and `nbytes` (line bytes) say how much is in.
    """

    def __init__(self, fmt: PushFormat = "protobuf") -> None:
        if fmt not in CONTENT_TYPES:
            raise ValueError(f"format must be protobuf or json, not {fmt!r}")
        self.format: PushFormat = fmt
        self.content_type = CONTENT_TYPES[fmt]
        self.lines = 0
        self.nbytes = 0
        self._entries: dict[str, list[bytes]] = {}  # protobuf: stream -> encoded entries
        self._values: dict[str, tuple[Mapping[str, str],
                                      list[tuple[str, str] | tuple[str, str, Metadata]]]] = {}

    def __len__(self) -> int:
        return self.lines

    def add(self, labels: Mapping[str, str], ts: Stamps, lines: list[bytes],
            nbytes: int | None = None,
            metadata: Sequence[Metadata | None] | None = None) -> None:
        if not lines:
            return
        self.lines += len(lines)
        self.nbytes += sum(map(len, lines)) if nbytes is None else nbytes
        key = scrub(format_labels(labels))
        md = metadata if metadata is not None and any(metadata) else None
        if self.format == "json":
            values = self._values.setdefault(key, (labels, []))[1]
            text = (line.decode() for line in lines)
            if md is None:
                values += zip(map(str, ts), text, strict=True)
            else:
                values += [(str(t), line, m) if m else (str(t), line)
                           for t, line, m in zip(ts, text, md, strict=True)]
            return
        if md is not None:  # rare (a structured_metadata stage): protobuf's own objects
            entries = encode_entries_with_metadata([int(t) for t in ts],
                                                   [line.decode() for line in lines], md)
            self._entries.setdefault(key, []).append(entries)
            return
        stamps = ts if isinstance(ts, np.ndarray) else np.asarray(ts, dtype=np.int64)
        self._entries.setdefault(key, []).append(encode_raw_entries(stamps, lines))

    def body(self) -> bytes:
        if self.format == "json":
            return orjson.dumps({"streams": [{"stream": labels, "values": values}
                                             for labels, values in self._values.values()]})
        parts: list[bytes] = []
        for key, entries in self._entries.items():
            label_field = _field_head(0x0A, len(key.encode())) + key.encode()
            size = len(label_field) + sum(map(len, entries))
            parts += [_field_head(0x0A, size), label_field, *entries]  # PushRequest.streams
        return bytes(cramjam.snappy.compress_raw(b"".join(parts)))


def split_push(body: bytes, fmt: PushFormat) -> list[tuple[bytes, int]] | None:
    """A push body cut in two halves by lines, as (body, lines); None for a body of one
    line (it cannot be cut) or one that does not decode."""
    try:
        streams = decode_push(body, CONTENT_TYPES[fmt], None)
    except WireError:
        return None
    lines = sum(len(sb) for sb in streams)
    if lines < 2:
        return None
    encode = encode_push_protobuf if fmt == "protobuf" else encode_push_json
    out: list[tuple[bytes, int]] = []
    for part in split_streams(streams, -(-lines // 2)):
        out.append((encode(part), sum(len(sb) for sb in part)))
    return out


def split_streams(streams: list[StreamBatch], max_lines: int) -> list[list[StreamBatch]]:
    """Consecutive parts of at most `max_lines` lines each, order kept."""
    return cut_runs(streams, max_lines, _cut_batch)


def _cut_batch(sb: StreamBatch, start: int, end: int) -> StreamBatch:
    md = None if sb.metadata is None else sb.metadata[start:end]
    return StreamBatch(sb.labels, sb.ts[start:end], sb.lines[start:end], md)


def cut_runs(runs: Sequence[R], max_lines: int,
             cut: Callable[[R, int, int], R]) -> list[list[R]]:
    """Runs of lines (streams, pieces: anything with a length) regrouped, order kept,
    into parts of at most `max_lines` lines; `cut(run, start, end)` takes a slice."""
    parts: list[list[R]] = []
    cur: list[R] = []
    room = max_lines
    for run in runs:
        start, n = 0, len(run)
        while start < n:
            take = min(room, n - start)
            cur.append(cut(run, start, start + take))
            start, room = start + take, room - take
            if not room:
                parts.append(cur)
                cur, room = [], max_lines
    if cur:
        parts.append(cur)
    return parts


def _field_head(tag: int, size: int) -> bytes:
    head = bytearray([tag])
    while size >= 0x80:
        head.append(size & 0x7F | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head)
