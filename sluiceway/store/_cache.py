"""A small LRU of decoded chunk blocks and chunk footers, bounded by bytes, shared by all
tenants.

Entries are per chunk object: its footer (`Footer`, what a range read needs first) and
each decoded block by its index in the footer (a format-1 chunk is one block, 0).
`discard(key)` drops everything of one object (it was replaced or deleted).

A block costs what it keeps alive: its lines and its arrays (`_memory.block_bytes`),
counted in a `HeldBytes` (the store's `chunk_cache` part). Blocks come here when queries
read them: not those just written, nor those the compactor or a replay reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sluiceway.model import EntryBlock
from sluiceway.store._chunkfmt import Footer
from sluiceway.store._memory import PER_ENTRY, HeldBytes, block_bytes

_FOOTER = -1  # the part number of an object's footer


def footer_bytes(footer: Footer) -> int:
    """About what a parsed footer holds in memory."""
    return 256 + 320 * len(footer.blocks) + len(footer.dictionary) + len(footer.labels or "")


class ChunkCache:
    def __init__(self, max_bytes: int, held: HeldBytes | None = None) -> None:
        """`held`: where its bytes are counted (a new one of `max_bytes` when None)."""
        self.max_bytes = max_bytes
        self.held = held if held is not None else HeldBytes(max_bytes)
        self._items: OrderedDict[tuple[str, int], tuple[EntryBlock | Footer, int]] = \
            OrderedDict()
        self._parts: dict[str, set[int]] = {}  # object key -> its parts held
        self._lock = threading.Lock()
        self.hits = 0  # blocks found here
        self.misses = 0  # blocks that had to be read

    def get(self, key: str, part: int = 0) -> EntryBlock | None:
        """Block `part` of chunk object `key`, decoded, if held."""
        with self._lock:
            item = self._items.get((key, part))
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end((key, part))
            self.hits += 1
            value = item[0]
        assert isinstance(value, EntryBlock)
        return value

    def has(self, key: str, part: int = 0) -> bool:
        """Whether block `part` of `key` is held (not counted as a hit or a miss)."""
        return (key, part) in self._items

    def put(self, key: str, block: EntryBlock, part: int = 0, size: int | None = None) -> None:
        """Hold block `part` of `key`; `size` is what its lines cost (default: its blob's
        bytes; a block sharing a larger blob gives its own share); its arrays are added."""
        self._put(key, part, block, block_bytes(block) if size is None
                  else size + PER_ENTRY * len(block))

    def footer(self, key: str) -> Footer | None:
        with self._lock:
            item = self._items.get((key, _FOOTER))
            if item is None:
                return None
            self._items.move_to_end((key, _FOOTER))
            value = item[0]
        assert isinstance(value, Footer)
        return value

    def put_footer(self, key: str, footer: Footer) -> None:
        self._put(key, _FOOTER, footer, footer_bytes(footer))

    def _put(self, key: str, part: int, value: EntryBlock | Footer, size: int) -> None:
        if size > self.max_bytes // 4:
            return  # one huge block must not flush the whole cache
        with self._lock:
            if (key, part) in self._items:
                return
            self._items[(key, part)] = (value, size)
            self._parts.setdefault(key, set()).add(part)
            total = self.held.bytes + size
            while total > self.max_bytes and self._items:
                (old_key, old_part), (_v, old_size) = self._items.popitem(last=False)
                self._forget_part(old_key, old_part)
                total -= old_size
            self.held.set(total)

    def _forget_part(self, key: str, part: int) -> None:
        parts = self._parts.get(key)
        if parts is not None:
            parts.discard(part)
            if not parts:
                del self._parts[key]

    def discard(self, key: str) -> None:
        """Forget every part of chunk object `key`."""
        with self._lock:
            for part in self._parts.pop(key, ()):
                item = self._items.pop((key, part), None)
                if item is not None:
                    self.held.sub(item[1])

    @property
    def bytes(self) -> int:
        return self.held.bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._parts.clear()
            self.held.set(0)
