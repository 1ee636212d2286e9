"""A small LRU of decoded chunks, bounded by bytes, shared by all tenants."""

from __future__ import annotations

import threading
from collections import OrderedDict

from sluiceway.model import EntryBlock


class ChunkCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, EntryBlock] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> EntryBlock | None:
        with self._lock:
            b = self._items.get(key)
            if b is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return b

    def put(self, key: str, block: EntryBlock) -> None:
        size = len(block.blob)
        if size > self.max_bytes // 4:
            return  # one huge chunk must not flush the whole cache
        with self._lock:
            if key in self._items:
                return
            self._items[key] = block
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.blob)

    def discard(self, key: str) -> None:
        with self._lock:
            b = self._items.pop(key, None)
            if b is not None:
                self._bytes -= len(b.blob)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
