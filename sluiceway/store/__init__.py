"""Single-node storage: WAL with group commit, per-stream heads, zstd chunks, label index."""

from sluiceway.store._chunk import ChunkError
from sluiceway.store._record import decode_record
from sluiceway.store._store import (
    ChunkWriteError,
    Store,
    StoreConfig,
    StoreError,
    StoreSeries,
    lock_data_dir,
)
from sluiceway.store._wal import WalPos, WalWriteError

__all__ = ["ChunkError", "ChunkWriteError", "Store", "StoreConfig", "StoreError",
           "StoreSeries", "WalPos", "WalWriteError", "decode_record", "lock_data_dir"]
