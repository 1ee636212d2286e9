"""Chunk objects through the object store: written in format 2, read in format 1 or 2
through range reads, decoded blocks and footers kept in the shared `ChunkCache`.

The formats themselves are `_chunk` (1) and `_chunkfmt` (2, and the one reader of both);
this module is the narrow seam the tenant store uses:
- `encode`: a sorted block as a format-2 chunk of one stream (block size by level);
- `footer`: a chunk's footer, from the cache or one read of its tail (`get_range`);
- `fetch`: the bytes of the blocks a read needs that are not cached, one `get_range` per
  run of neighbouring blocks (blocks overlapping a time range are one run);
- `read_block`: one block's entries, from the cache or the bytes read above;
- `written`: the footer of what a flush just wrote goes into the cache (not its lines).
A backend whose range reads fetch the whole object anyway (`ranged_reads` False) is read
once, whole, by `footer`. A chunk that does not check out is a `ChunkError`, a missing
one `NotFound`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sluiceway.model import EntryBlock
from sluiceway.store._cache import ChunkCache
from sluiceway.store._chunk import ChunkError, ChunkMeta
from sluiceway.store._chunkfmt import (
    TAIL_BYTES,
    BlockInfo,
    Footer,
    byte_ranges,
    decode_blocks,
    encode_chunk_v2,
    footer_of,
    read_footer,
)
from sluiceway.store._ingestlog import Position
from sluiceway.store._objstore import ObjectStore


class LogPositions:
    """The footer's log position (opaque bytes to the chunk format): JSON
    `{"after": P}`, P a position of the ingest log in the log's own JSON form
    (`position_to_json`, as in the checkpoint) or null for the log's start: every line
    of the chunk comes from a log record after P. A flushed head knows its P (what was
    applied before its first line); a merge of chunks takes the earliest of theirs
    (null when any is null or unknown: written before positions were kept, or format 1)."""

    def __init__(self, to_json: Callable[[Any], object],
                 from_json: Callable[[object], Position]) -> None:
        self.to_json = to_json
        self.from_json = from_json

    def encode(self, after: Position | None) -> bytes:
        return orjson.dumps({"after": None if after is None else self.to_json(after)})

    def decode(self, raw: bytes) -> Position | None:
        """The `after` of a footer's log position; ValueError when there is none."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a log position: {raw!r}") from exc
        if not isinstance(obj, dict) or "after" not in obj:
            raise ValueError(f"not a log position: {raw!r}")
        return None if obj["after"] is None else self.from_json(obj["after"])

    def earliest(self, footers: Sequence[Footer]) -> bytes:
        """The log position of a chunk that merges the chunks of `footers`."""
        afters: list[Position] = []
        for f in footers:
            try:
                after = self.decode(f.log_pos)
            except ValueError:
                after = None
            if after is None:
                return self.encode(None)
            afters.append(after)
        first = afters[0]
        for a in afters[1:]:
            if a < first:
                first = a
        return self.encode(first)


@dataclass(frozen=True, slots=True)
class Held:
    """Bytes of one chunk already read, as (file offset, bytes) pieces: blocks inside
    them need no read of their own."""

    pieces: tuple[tuple[int, bytes], ...] = ()

    def slice(self, b: BlockInfo) -> bytes | None:
        for offset, data in self.pieces:
            lo = b.offset - offset
            if lo >= 0 and lo + b.length <= len(data):
                return data if (lo, b.length) == (0, len(data)) else data[lo : lo + b.length]
        return None

    def __add__(self, other: Held) -> Held:
        return Held(self.pieces + other.pieces)


NOTHING = Held()


class ChunkIO:
    def __init__(self, objects: ObjectStore, cache: ChunkCache) -> None:
        self.objects = objects
        self.cache = cache
        # Without real range reads, the first read of a chunk takes all of it.
        self.tail_bytes = TAIL_BYTES if objects.ranged_reads else 1 << 62

    # --- writing ---------------------------------------------------------------------
    @staticmethod
    def encode(block: EntryBlock, level: int, *, tenant: str, labels: str, log_pos: bytes,
               filters: Callable[[EntryBlock], bytes] | None = None,
               ) -> tuple[bytes, ChunkMeta]:
        """`block` (sorted, deduplicated, n >= 1) as a format-2 chunk of stream `labels`
        (Loki's text form) of `tenant`, from the log records `log_pos` says
        (`LogPositions`); `filters` makes each block's filters slot (`_blockfilter`: the
        compactor's chunks)."""
        return encode_chunk_v2(block, level, tenant=tenant, labels=labels, log_pos=log_pos,
                               filters=filters)

    def written(self, key: str, data: bytes) -> None:
        """The footer of `data` (a chunk just written under `key`) into the cache, so the
        first read of it needs no read of its tail. Not its blocks: under ingest the cache
        would hold only what was just written, and push out what queries read."""
        self.cache.put_footer(key, footer_of(data))

    # --- reading ---------------------------------------------------------------------
    def footer(self, key: str, size: int) -> tuple[Footer, Held, bool]:
        """The footer of the chunk `key` of `size` bytes, the bytes read to find it
        (`NOTHING` from the cache), and whether it was read now (not cached: the caller
        checks it against what it expects, then `keep_footer`s it)."""
        footer = self.cache.footer(key)
        if footer is not None:
            return footer, NOTHING, False
        reads: list[tuple[int, bytes]] = []

        def read(offset: int, length: int) -> bytes:
            data = self.objects.get_range(key, offset, length)
            reads.append((offset, data))
            return data

        footer = read_footer(read, size, self.tail_bytes)
        return footer, Held(tuple(reads)), True

    def keep_footer(self, key: str, footer: Footer) -> None:
        self.cache.put_footer(key, footer)

    def fetch(self, key: str, blocks: Sequence[BlockInfo], held: Held = NOTHING) -> Held:
        """`held` and the bytes of those of `blocks` (file order) that are neither cached
        nor held: one range read per run of neighbours."""
        missing = [b for b in blocks
                   if held.slice(b) is None and not self.cache.has(key, b.index)]
        pieces = tuple((offset, self._read(key, offset, length))
                       for offset, length in byte_ranges(missing))
        return held + Held(pieces) if pieces else held

    def _read(self, key: str, offset: int, length: int) -> bytes:
        data = self.objects.get_range(key, offset, length)
        if len(data) != length:
            raise ChunkError(f"chunk is shorter than its footer says ({offset + len(data)} "
                             f"bytes, its blocks end at {offset + length})")
        return data

    def read_block(self, key: str, footer: Footer, b: BlockInfo, labels: dict[str, str],
                   held: Held = NOTHING, keep: bool = True) -> EntryBlock:
        """Block `b` of the chunk `key`, every byte checked: from the cache, `held`, or
        (the cache dropped it since `fetch`) a range read of its own. `keep`: put it in
        the cache (a query's read, not the store's own)."""
        cached = self.cache.get(key, b.index)
        if cached is not None:
            return cached
        data = held.slice(b)
        if data is None:
            data = self._read(key, b.offset, b.length)
        block = decode_blocks(footer, [b], data, b.offset, labels)[0]
        if keep:
            self.cache.put(key, block, b.index)
        return block

    def forget(self, key: str) -> None:
        self.cache.discard(key)
