"""A small LRU of decoded chunks, bounded by bytes, shared by all tenants.

A chunk costs what its decoded block keeps alive: its lines and its arrays
(`_memory.block_bytes`). Only chunks queries read are put here: not those just written,
nor those the compactor or a replay reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sluiceway.model import EntryBlock
from sluiceway.store._memory import Held, block_bytes


class ChunkCache:
    def __init__(self, max_bytes: int, held: Held | None = None) -> None:
        """`held`: where its bytes are counted (a new one of `max_bytes` when None)."""
        self.max_bytes = max_bytes
        self.held = held if held is not None else Held(max_bytes)
        self._items: OrderedDict[str, tuple[EntryBlock, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def bytes(self) -> int:
        return self.held.bytes

    def get(self, key: str) -> EntryBlock | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, block: EntryBlock) -> None:
        size = block_bytes(block)
        if size > self.max_bytes // 4:
            return  # one huge chunk must not flush the whole cache
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (block, size)
            total = self.held.bytes + size
            while total > self.max_bytes and self._items:
                _, (_, old) = self._items.popitem(last=False)
                total -= old
            self.held.set(total)

    def discard(self, key: str) -> None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self.held.sub(item[1])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.held.set(0)
