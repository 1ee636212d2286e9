"""Single-node storage: the ingest log (WAL with group commit), the heads (applied in log
order), zstd chunks, the index (immutable index objects), and the checkpoint replay
starts from; chunks and index objects go through an `ObjectStore` (`LocalDir` on one
node; `S3Bucket` and `JetStreamBucket` for shared storage, their client libraries loaded
when one is made)."""

from sluiceway.store._chunk import ChunkError
from sluiceway.store._config import (
    CompactorConfig,
    DeletionMode,
    NatsConfig,
    ObjectBackend,
    S3Config,
    StoreConfig,
)
from sluiceway.store._deletes import (
    DISABLED,
    FILTER_AND_DELETE,
    FILTER_ONLY,
    PROCESSED,
    RECEIVED,
    DeleteRequest,
    DeleteRequests,
    LineDeleter,
)
from sluiceway.store._heads import OUT_OF_ORDER, Applied, Heads, Rejection
from sluiceway.store._index import IndexEntry, IndexReader
from sluiceway.store._ingestlog import IngestLog, Position
from sluiceway.store._memory import HeldBytes, MemoryPart, StoreMemory
from sluiceway.store._objstore import InvalidKey, LocalDir, NotFound, ObjectInfo, ObjectStore
from sluiceway.store._objstore_nats import JetStreamBucket, close_loop_thread
from sluiceway.store._objstore_s3 import S3Bucket
from sluiceway.store._store import (
    UNORDERED_WINDOW_S,
    ChunkWriteError,
    Store,
    StoreError,
    lock_data_dir,
)
from sluiceway.store._wal import FileWal, WalPos, WalWriteError, decode_record

__all__ = ["DISABLED", "FILTER_AND_DELETE", "FILTER_ONLY", "OUT_OF_ORDER", "PROCESSED",
           "RECEIVED", "UNORDERED_WINDOW_S", "Applied", "ChunkError", "ChunkWriteError",
           "CompactorConfig", "DeleteRequest", "DeleteRequests", "DeletionMode", "FileWal",
           "Heads", "HeldBytes", "IndexEntry", "IndexReader", "IngestLog", "InvalidKey",
           "JetStreamBucket", "LineDeleter", "LocalDir", "MemoryPart", "NatsConfig",
           "NotFound", "ObjectBackend", "ObjectInfo", "ObjectStore", "Position", "Rejection",
           "S3Bucket", "S3Config", "Store", "StoreConfig", "StoreError", "StoreMemory",
           "WalPos", "WalWriteError", "close_loop_thread", "decode_record", "lock_data_dir"]
