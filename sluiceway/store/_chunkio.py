"""Chunk objects through the object store: written in format 2, read in format 1 or 2
through range reads, decoded blocks and footers kept in the shared `ChunkCache`.

The formats themselves are `_chunk` (1) and `_chunkfmt` (2, and the one reader of both);
this module is the narrow seam the tenant store uses:
- `encode`: a sorted block as a format-2 chunk of one stream (block size by level);
- `footer`: a chunk's footer, from the cache or one read of its tail (`get_range`);
- `read_block`: one block's entries, from the cache, the tail read above, or one
  `get_range` of exactly its bytes;
- `written`: what a flush just wrote goes into the cache without reading it back.
A chunk that does not check out is a `ChunkError`, a missing one `NotFound`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from sluiceway.model import EntryBlock
from sluiceway.store._cache import ChunkCache
from sluiceway.store._chunk import ChunkError, ChunkMeta
from sluiceway.store._chunkfmt import (
    BlockInfo,
    Footer,
    decode_blocks,
    encode_chunk_v2,
    footer_of,
    read_footer,
)
from sluiceway.store._objstore import ObjectStore
from sluiceway.store._wal import WalPos


def log_position(pos: WalPos) -> bytes:
    """The footer's log position of WAL position `pos`: JSON `[segment, offset]`, the
    form the WAL's positions take in JSON elsewhere (opaque to the chunk format)."""
    return orjson.dumps([pos.segment, pos.offset])


@dataclass(frozen=True, slots=True)
class Tail:
    """The bytes of a chunk's first (tail) read, from `offset` on: blocks inside them
    need no read of their own (a small chunk is read once, whole)."""

    offset: int
    data: bytes

    def slice(self, b: BlockInfo) -> bytes | None:
        lo = b.offset - self.offset
        if lo < 0 or lo + b.length > len(self.data):
            return None
        return self.data[lo : lo + b.length]


NO_TAIL = Tail(0, b"")


class ChunkIO:
    def __init__(self, objects: ObjectStore, cache: ChunkCache) -> None:
        self.objects = objects
        self.cache = cache

    # --- writing ---------------------------------------------------------------------
    @staticmethod
    def encode(block: EntryBlock, level: int, *, tenant: str, labels: str,
               pos: WalPos) -> tuple[bytes, ChunkMeta]:
        """`block` (sorted, deduplicated, n >= 1) as a format-2 chunk of stream `labels`
        (Loki's text form) of `tenant`, covering the WAL up to `pos`."""
        return encode_chunk_v2(block, level, tenant=tenant, labels=labels,
                               log_pos=log_position(pos))

    def written(self, key: str, data: bytes, block: EntryBlock) -> None:
        """`data` (a chunk just written under `key`, made from `block`) into the cache:
        its footer and its blocks, each with a blob of its own lines (a query's work over
        a block's blob never covers its neighbours')."""
        footer = footer_of(data)
        self.cache.put_footer(key, footer)
        lo = 0
        for b in footer.blocks:
            self.cache.put(key, block.slice(lo, lo + b.n).compacted(), b.index)
            lo += b.n

    # --- reading ---------------------------------------------------------------------
    def footer(self, key: str, size: int) -> tuple[Footer, Tail, bool]:
        """The footer of the chunk `key` of `size` bytes, the tail read that found it
        (`NO_TAIL` from the cache), and whether it was read now (not cached: the caller
        checks it against what it expects, then `keep_footer`s it)."""
        footer = self.cache.footer(key)
        if footer is not None:
            return footer, NO_TAIL, False
        reads: list[tuple[int, bytes]] = []

        def read(offset: int, length: int) -> bytes:
            data = self.objects.get_range(key, offset, length)
            reads.append((offset, data))
            return data

        footer = read_footer(read, size)
        return footer, Tail(*reads[0]), True

    def keep_footer(self, key: str, footer: Footer) -> None:
        self.cache.put_footer(key, footer)

    def read_block(self, key: str, footer: Footer, b: BlockInfo, labels: dict[str, str],
                   tail: Tail = NO_TAIL) -> EntryBlock:
        """Block `b` of the chunk `key`, every byte checked."""
        cached = self.cache.get(key, b.index)
        if cached is not None:
            return cached
        data = tail.slice(b)
        if data is None:
            data = self.objects.get_range(key, b.offset, b.length)
            if len(data) != b.length:
                raise ChunkError(f"chunk is shorter than its footer says ({b.offset + len(data)}"
                                 f" bytes, block {b.index} ends at {b.end})")
        block = decode_blocks(footer, [b], data, b.offset, labels)[0]
        self.cache.put(key, block, b.index)
        return block

    def forget(self, key: str) -> None:
        self.cache.discard(key)
