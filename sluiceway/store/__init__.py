"""Single-node storage: WAL with group commit, per-stream heads, zstd chunks, label index."""

from sluiceway.store._chunk import ChunkError
from sluiceway.store._store import Store, StoreConfig, StoreError, StoreSeries
from sluiceway.store._wal import WalPos, WalWriteError

__all__ = ["ChunkError", "Store", "StoreConfig", "StoreError", "StoreSeries", "WalPos",
           "WalWriteError"]
