"""Single-node storage: the ingest log (WAL with group commit), the heads (applied in log
order), zstd chunks, the label index, and the checkpoint replay starts from; all chunk
bytes go through an `ObjectStore` (`LocalDir` on one node; `S3Bucket` and
`JetStreamBucket` for shared storage, their client libraries loaded when one is made)."""

from sluiceway.store._blocks import sort_dedupe
from sluiceway.store._chunk import ChunkError
from sluiceway.store._heads import OUT_OF_ORDER, Applied, Heads, Rejection
from sluiceway.store._ingestlog import IngestLog, Position
from sluiceway.store._memory import Held, MemoryPart, StoreMemory
from sluiceway.store._objstore import InvalidKey, LocalDir, NotFound, ObjectInfo, ObjectStore
from sluiceway.store._objstore_nats import JetStreamBucket
from sluiceway.store._objstore_s3 import S3Bucket
from sluiceway.store._store import (
    ChunkWriteError,
    Store,
    StoreConfig,
    StoreError,
    StoreSeries,
    index_stats,
    lock_data_dir,
)
from sluiceway.store._wal import FileWal, WalPos, WalWriteError, decode_record

__all__ = ["OUT_OF_ORDER", "Applied", "ChunkError", "ChunkWriteError", "FileWal", "Heads",
           "Held", "IngestLog", "InvalidKey", "JetStreamBucket", "LocalDir", "MemoryPart",
           "NotFound", "ObjectInfo", "ObjectStore", "Position", "Rejection", "S3Bucket",
           "Store", "StoreConfig", "StoreError", "StoreMemory", "StoreSeries", "WalPos",
           "WalWriteError", "decode_record", "index_stats", "lock_data_dir", "sort_dedupe"]
