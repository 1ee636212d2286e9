"""The agent's side of the shared `sluiceway.buffer`: batch items, their codec, the batcher.

A queue item is one encoded push body plus what the agent needs to account for it: its
line count and the file ranges (checkpoints) it covers. The item's buffer `tag` is its
line count, so the buffer's per-tag drop and spill counters convert to lines exactly.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sluiceway.agent._config import BatchConfig, QueueConfig
from sluiceway.agent._positions import Checkpoint, Positions
from sluiceway.agent._stats import Stats
from sluiceway.buffer import Batch, Buffer, BufferConfig
from sluiceway.model import StreamBatch
from sluiceway.wire import WireError, decode_push, encode_push_json, encode_push_protobuf

log = logging.getLogger("sluiceway.agent")
_LEN = struct.Struct("<II")


@dataclass(slots=True, eq=False)
class Item:
    body: bytes
    fmt: str  # "protobuf" | "json": how `body` is encoded
    lines: int
    checkpoints: list[Checkpoint]


class ItemCodec:
    """Spill record = items back to back: `u32 header len | u32 body len | header | body`;
    the body stays raw bytes (no base64), the header is a small JSON."""

    def encode(self, items: list[Any]) -> bytes:
        out = []
        for it in items:
            head = orjson.dumps([it.fmt, it.lines, it.checkpoints])
            out += [_LEN.pack(len(head), len(it.body)), head, it.body]
        return b"".join(out)

    def decode(self, data: bytes) -> list[Any]:
        items, pos, view = [], 0, memoryview(data)
        while pos < len(data):
            hl, bl = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            fmt, lines, cks = orjson.loads(view[pos:pos + hl])
            pos += hl
            items.append(Item(bytes(view[pos:pos + bl]), fmt, lines,
                              [tuple(c) for c in cks]))
            pos += bl
        return items


CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}


def split_body(body: bytes, fmt: str) -> list[tuple[bytes, int]] | None:
    """An item's push body cut in two halves by lines, as (body, lines); None for a body
    of one line (it cannot be cut) or one that does not decode."""
    try:
        streams = decode_push(body, CONTENT_TYPES[fmt], None)
    except WireError:
        return None
    lines = sum(len(sb) for sb in streams)
    if lines < 2:
        return None
    encode = encode_push_protobuf if fmt == "protobuf" else encode_push_json
    return [(encode(part), n) for part, n, _ in _split_streams(streams, -(-lines // 2))]


def buffer_config(q: QueueConfig, b: BatchConfig, data_dir: Path) -> BufferConfig:
    # The buffer bounds items; an item is a batch of up to `max_lines`, so the line
    # capacity becomes a whole number of batches (at least two, so one can be in flight
    # while the next fills).
    items = max(2, -(-q.capacity // b.max_lines))
    return BufferConfig(
        max_items=items, max_bytes=q.max_bytes, when_full=q.when_full, drop=q.drop,
        spill_dir=data_dir / "spill", spill_max_bytes=q.spill_max_bytes,
        segment_bytes=min(64 * 1024**2, max(4096, q.spill_max_bytes // 16)),
        record_items=1, record_bytes=1, when_spill_full=q.when_spill_full)


class AgentQueue:
    """`Buffer[Item]` plus line accounting and position updates."""

    def __init__(self, q: QueueConfig, b: BatchConfig, data_dir: Path, positions: Positions,
                 stats: Stats) -> None:
        self.cfg = q
        self.positions = positions
        self.stats = stats
        self.buffer: Buffer[Item] = Buffer(buffer_config(q, b, data_dir), name="agent",
                                           codec=ItemCodec(), on_spilled=self._spilled)
        # Items accepted in memory, in order: in drop-oldest mode the buffer discards
        # from the front silently, so anything older than the next batch handed out
        # was dropped and its lines are counted lost here.
        self._order: deque[Item] = deque()
        self._order_lock = threading.Lock()
        self._track = q.when_full == "drop" and q.drop == "oldest"

    def put(self, item: Item) -> bool:
        ok = self.buffer.put(item, len(item.body), tag=item.lines)
        if ok:
            self.stats.add(lines_enqueued=item.lines)
            if self._track:
                with self._order_lock:
                    self._order.append(item)
        elif self.buffer.closed and item.checkpoints:
            pass  # shutting down: positions stay put, so the file is read again next start
        else:
            reason = "spill_full" if self.cfg.when_full == "spill" else "queue_full"
            if self.buffer.closed:
                reason = "shutdown"
            self.stats.lost(reason, item.lines)
            self.stats.add(lines_dropped=item.lines)
            self.positions.done(item.checkpoints)  # lost lines are accounted, move on
        return ok

    def get(self, max_wait: float) -> Batch[Item] | None:
        batch = self.buffer.get_batch(max_items=1, max_bytes=1 << 62, max_wait=max_wait)
        if batch is not None and self._track and batch.source == "memory":
            self._forget_dropped(batch.items)
        return batch

    def _forget_dropped(self, taken: list[Item]) -> None:
        ids = {id(i) for i in taken}
        with self._order_lock:
            while self._order and id(self._order[0]) not in ids:
                gone = self._order.popleft()
                self.stats.lost("queue_full_oldest", gone.lines)
                self.stats.add(lines_dropped=gone.lines)
                self.positions.done(gone.checkpoints)
            while self._order and id(self._order[0]) in ids:
                self._order.popleft()

    def _spilled(self, items: list[Item]) -> None:
        self.stats.add(lines_spilled=sum(i.lines for i in items))
        for it in items:
            self.positions.done(it.checkpoints)
        # Persist now, not at the next sync: a SIGKILL right after must not make the next
        # run read these lines from the file again while the spill still holds them.
        try:
            self.positions.save()
        except OSError as exc:
            log.error("cannot write positions after a spill: %s", exc)

    def snapshot(self) -> dict[str, Any]:
        return self.buffer.stats()


class Batcher:
    """Collects pieces from all inputs into items of up to `max_lines`/`max_bytes`, flushed
    when full or `max_wait` after the first piece. `add` blocks when the queue blocks."""

    def __init__(self, cfg: BatchConfig, fmt: str, queue: AgentQueue,
                 positions: Positions) -> None:
        self.cfg, self.fmt, self.queue, self.positions = cfg, fmt, queue, positions
        self._lock = threading.Lock()
        self._streams: dict[tuple[tuple[str, str], ...], StreamBatch] = {}
        self._cks: list[Checkpoint] = []
        self._lines = self._bytes = 0
        self._since = 0.0
        self._encode = encode_push_protobuf if fmt == "protobuf" else encode_push_json

    def add(self, streams: list[StreamBatch], lines: int, nbytes: int,
            checkpoints: list[Checkpoint]) -> None:
        if lines > self.cfg.max_lines:
            # Inputs without a per-read cap (stdin, syslog, demo) can hand over more than
            # one item's worth at once: cut it, checkpoints riding with the last part.
            parts = _split_streams(streams, self.cfg.max_lines)
            for i, (part, n, size) in enumerate(parts):
                self._add(part, n, size, checkpoints if i == len(parts) - 1 else [])
            return
        self._add(streams, lines, nbytes, checkpoints)

    def _add(self, streams: list[StreamBatch], lines: int, nbytes: int,
             checkpoints: list[Checkpoint]) -> None:
        with self._lock:
            if self._lines and (self._lines + lines > self.cfg.max_lines
                                or self._bytes + nbytes > self.cfg.max_bytes):
                self._flush()
            if not (self._lines or self._cks):
                self._since = time.monotonic()
            for sb in streams:
                key = tuple(sorted(sb.labels.items()))
                cur = self._streams.get(key)
                if cur is None:
                    self._streams[key] = sb
                else:
                    if sb.metadata is not None or cur.metadata is not None:
                        cur.metadata = ((cur.metadata or [None] * len(cur.ts))
                                        + (sb.metadata or [None] * len(sb.ts)))
                    cur.ts.extend(sb.ts)
                    cur.lines.extend(sb.lines)
            self._cks.extend(checkpoints)
            self._lines += lines
            self._bytes += nbytes
            if self._lines >= self.cfg.max_lines or self._bytes >= self.cfg.max_bytes:
                self._flush()

    def tick(self, force: bool = False) -> None:
        with self._lock:
            if (self._lines or self._cks) and (
                    force or time.monotonic() - self._since >= self.cfg.max_wait):
                self._flush()

    def _flush(self) -> None:
        streams, cks, lines = list(self._streams.values()), self._cks, self._lines
        self._streams, self._cks, self._lines, self._bytes = {}, [], 0, 0
        if not lines:
            self.positions.done(cks)  # everything was filtered out: nothing to ship
            return
        self.queue.put(Item(self._encode(streams), self.fmt, lines, cks))


def _split_streams(streams: list[StreamBatch],
                   max_lines: int) -> list[tuple[list[StreamBatch], int, int]]:
    """Consecutive parts of at most `max_lines` lines each, with their line and byte
    counts (bytes as the inputs count them: characters of the line text)."""
    parts: list[tuple[list[StreamBatch], int, int]] = []
    cur: list[StreamBatch] = []
    room = max_lines
    for sb in streams:
        start = 0
        while start < len(sb):
            take = min(room, len(sb) - start)
            end = start + take
            md = None if sb.metadata is None else sb.metadata[start:end]
            cur.append(StreamBatch(sb.labels, sb.ts[start:end], sb.lines[start:end], md))
            start, room = end, room - take
            if not room:
                parts.append(_part(cur))
                cur, room = [], max_lines
    if cur:
        parts.append(_part(cur))
    return parts


def _part(streams: list[StreamBatch]) -> tuple[list[StreamBatch], int, int]:
    return (streams, sum(len(sb) for sb in streams),
            sum(len(line) for sb in streams for line in sb.lines))
