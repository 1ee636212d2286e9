"""Single-node storage: WAL with group commit, per-stream heads, zstd chunks, label index,
all chunk bytes through an `ObjectStore` (`LocalDir` on one node; `S3Bucket` and
`JetStreamBucket` for shared storage, their client libraries loaded when one is made)."""

from sluiceway.store._blocks import sort_dedupe
from sluiceway.store._chunk import ChunkError
from sluiceway.store._objstore import InvalidKey, LocalDir, NotFound, ObjectInfo, ObjectStore
from sluiceway.store._objstore_nats import JetStreamBucket
from sluiceway.store._objstore_s3 import S3Bucket
from sluiceway.store._record import decode_record, encode_record
from sluiceway.store._store import (
    ChunkWriteError,
    Store,
    StoreConfig,
    StoreError,
    StoreSeries,
    index_stats,
    lock_data_dir,
)
from sluiceway.store._wal import WalPos, WalWriteError

__all__ = ["ChunkError", "ChunkWriteError", "InvalidKey", "JetStreamBucket", "LocalDir",
           "NotFound", "ObjectInfo", "ObjectStore", "S3Bucket", "Store", "StoreConfig",
           "StoreError", "StoreSeries", "WalPos", "WalWriteError", "decode_record",
           "encode_record", "index_stats", "lock_data_dir", "sort_dedupe"]
