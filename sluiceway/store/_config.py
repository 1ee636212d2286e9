"""The store's configuration: the server's `storage:` and `compactor:` sections are these
models, embedded as they are (no copy mapped field by field). Key names, defaults and
units (`10s`, `128MiB`: `model.Duration`, `model.Bytes`) are the YAML's.

Where chunks live, `backend` and its sections:

- `filesystem` (default; `local` is read as it): files under `<data_dir>/tenants`.
- `s3`: an S3-compatible bucket, `s3` with the key names of Loki's
  `storage_config.aws` / `common.storage.s3` (`bucketnames`, `endpoint`, `region`,
  `access_key_id`, `secret_access_key`, `session_token`, `insecure`, `s3forcepathstyle`)
  and of its object store's `storage_prefix`.
- `nats`: a NATS JetStream object store bucket, `nats`.

Only chunks and index objects move: the WAL and the checkpoint stay in the data dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from sluiceway.model import Bytes, Duration
from sluiceway.store._objstore import ObjectStore
from sluiceway.store._objstore_nats import JetStreamBucket
from sluiceway.store._objstore_s3 import S3Bucket

ObjectBackend = Literal["filesystem", "s3", "nats"]
DeletionMode = Literal["disabled", "filter-only", "filter-and-delete"]


def _backend(value: object) -> object:
    return "filesystem" if value == "local" else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class S3Config(_Section):
    bucketnames: str  # Loki's name; one bucket
    endpoint: str = ""  # host[:port] (https unless `insecure`) or a URL; empty: AWS by region
    region: str = ""  # empty: AWS_REGION, else us-east-1
    access_key_id: str = ""  # empty: the standard chain (AWS_* variables, web identity, ...)
    secret_access_key: str = ""
    session_token: str = ""
    insecure: bool = False  # plain http to an endpoint given without a scheme
    # Path-style requests (`endpoint/bucket/key`), which AWS, MinIO and Ceph all take;
    # Loki's default is false (virtual-hosted style).
    s3forcepathstyle: bool = True
    storage_prefix: str = ""  # every key under this prefix (a bucket shared with others)
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    timeout: Annotated[Duration, Field(gt=0)] = 30.0  # per request
    put_concurrency: Annotated[int, Field(ge=1, le=256)] = 8  # chunk uploads in flight

    @field_validator("bucketnames")
    @classmethod
    def _one_bucket(cls, v: str) -> str:
        names = [n.strip() for n in v.split(",") if n.strip()]
        if len(names) != 1:
            raise ValueError("give exactly one bucket (Loki's several buckets, chunks spread "
                             "over them, are not supported)")
        return names[0]

    @field_validator("storage_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        parts = v.strip("/").split("/")
        if v.strip("/") and any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{v!r} must be `/`-separated names (no empty, '.' or '..' part)")
        return v.strip("/")

    def endpoint_url(self) -> str:
        e = self.endpoint.strip()
        if not e or "://" in e:
            return e
        return f"{'http' if self.insecure else 'https'}://{e}"

    def open(self) -> S3Bucket:
        return S3Bucket(
            self.bucketnames, prefix=self.storage_prefix, endpoint=self.endpoint_url() or None,
            region=self.region or None, access_key_id=self.access_key_id or None,
            secret_access_key=self.secret_access_key or None,
            session_token=self.session_token or None, force_path_style=self.s3forcepathstyle,
            timeout_s=self.timeout, max_retries=self.max_retries,
            concurrency=self.put_concurrency)


class NatsConfig(_Section):
    url: str = "nats://127.0.0.1:4222"  # comma-separated: several servers of one cluster
    bucket: str = "chunks"
    name_prefix: str = "sluiceway-"  # the bucket is `<name_prefix><bucket>`
    replicas: Annotated[int, Field(ge=1, le=5)] = 1  # each replica holds every object
    timeout: Annotated[Duration, Field(gt=0)] = 10.0  # per request, and to connect at start
    cache_size: Bytes = 64 << 20  # whole objects kept for get_range (no range reads)
    user: str = ""
    password: str = ""
    token: str = ""
    creds_file: str = ""  # a NATS credentials file (JWT + nkey seed)
    nkey_seed_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @field_validator("bucket", "name_prefix")
    @classmethod
    def _name(cls, v: str) -> str:
        if v and not all(c.isascii() and (c.isalnum() or c in "-_") for c in v):
            raise ValueError(f"{v!r} may hold only letters, digits, '-' and '_' (a JetStream "
                             "bucket name)")
        return v

    def open(self) -> JetStreamBucket:
        return JetStreamBucket(
            self.url, self.bucket, name_prefix=self.name_prefix, replicas=self.replicas,
            timeout_s=self.timeout, cache_bytes=self.cache_size, user=self.user or None,
            password=self.password or None, token=self.token or None,
            creds_file=self.creds_file or None, nkey_seed_file=self.nkey_seed_file or None,
            tls_ca_file=self.tls_ca_file or None, tls_cert_file=self.tls_cert_file or None,
            tls_key_file=self.tls_key_file or None)


class StoreConfig(_Section):
    """The server's `storage:` section. Durations are seconds, sizes bytes."""

    data_dir: Path = Path("./data")
    backend: Annotated[ObjectBackend, BeforeValidator(_backend)] = "filesystem"
    s3: S3Config | None = None
    nats: NatsConfig | None = None
    # "always": fsync before the ack (group commit); "interval": at most this long after.
    wal_sync: Literal["always", "interval"] = "always"
    wal_sync_interval: Duration = 0.1
    wal_segment_size: Bytes = 128 << 20
    max_wal_size: Bytes = 2 << 30
    chunk_target_size: Bytes = 4 << 20
    max_chunk_age: Duration = 7200.0
    chunk_idle_period: Duration = 1800.0
    compression_level: Annotated[int, Field(ge=1, le=19)] = 1
    flush_check_period: Duration = 10.0
    retention_period: Duration = 0.0  # 0 keeps data forever, as Loki's default
    retention_check_interval: Duration = 600.0
    # Decoded chunk blocks (and footers) kept for queries (Loki's embedded chunk cache,
    # max_size_mb): filled only by queries' reads.
    cache_size: Bytes = 128 << 20
    # Lines of all streams not yet in chunks (in heads, or being written): past it the
    # largest heads are cut into chunks early, pushes wait for the flusher, and a WAL
    # replay writes chunks as it goes (as Loki's replay_memory_ceiling). 0: no bound.
    max_heads_size: Bytes = 128 << 20
    flush_on_shutdown: bool = True
    # At start, take back the chunks no index object names whose lines are served nowhere
    # else (the orphan sweep keeps and counts them): `sluiceway server --recover-chunks`.
    recover_chunks: bool = False
    compaction_enabled: bool = True
    compaction_level: Annotated[int, Field(ge=1, le=22)] = 17
    compaction_target_size: Bytes = 16 << 20
    compaction_min_age: Duration = 900.0
    compaction_interval: Duration = 600.0
    # Index objects other processes write (a server reading the same bucket) are seen
    # within this; 0: only at start and after this server's own flushes.
    index_sync_period: Duration = 30.0
    # ... and right after this server's flush, unless they were listed this recently (a
    # listing of a JetStream bucket reads every object's metadata).
    index_relist_after_write: Duration = 1.0

    @model_validator(mode="after")
    def _backend_has_its_section(self) -> StoreConfig:
        if self.backend == "s3" and self.s3 is None:
            raise ValueError("backend is s3 but there is no storage.s3 section (it needs "
                             "bucketnames at least)")
        if self.backend == "nats" and self.nats is None:
            self.nats = NatsConfig()
        return self

    def object_store(self) -> ObjectStore | None:
        """The backend `backend` names, not yet checked; None for `filesystem` (the
        store's own `LocalDir` under the data dir). ImportError (its client library is
        not installed), ValueError or OSError when it cannot be made."""
        if self.backend == "s3" and self.s3 is not None:
            return self.s3.open()
        if self.backend == "nats" and self.nats is not None:
            return self.nats.open()
        return None


class CompactorConfig(_Section):
    """The server's `compactor:` section, Loki's keys. `compaction_interval` and
    `apply_retention_interval`, when set, replace `storage.compaction_interval` /
    `retention_check_interval`; `retention_enabled` makes `limits.retention_period`
    apply (as in Loki; the server's per-tenant `retention_for`). The deletion keys are
    read for the delete API."""

    working_directory: Path | None = None
    compaction_interval: Duration | None = None
    apply_retention_interval: Duration = 0.0  # 0: with every compaction (Loki)
    retention_enabled: bool = False
    # Chunks and index objects out of service (compaction, retention) are deleted this
    # much later: longer than any query and than `storage.index_sync_period`.
    retention_delete_delay: Duration = 7200.0
    delete_request_store: str | None = None
    delete_request_cancel_period: Duration = 86400.0
    delete_max_interval: Duration = 86400.0
    deletion_mode: DeletionMode | None = None  # Loki 2.x's place; limits.deletion_mode since
    # Streams compacted at once (Loki's default, 1): each holds its chunks, their merged
    # copy and a zstd context (about 50 MB at level 17) while it is compressed.
    max_compaction_parallelism: Annotated[int, Field(ge=1)] = 1

    def compaction_every(self, storage: StoreConfig) -> float:
        """Seconds between compactions: Loki's key when set, else the storage key."""
        return self.compaction_interval or storage.compaction_interval

    def retention_every(self, storage: StoreConfig) -> float:
        """Seconds between retention passes: Loki's `apply_retention_interval`, else its
        `compaction_interval` (Loki applies retention with each compaction), else
        `storage.retention_check_interval`."""
        return (self.apply_retention_interval or self.compaction_interval
                or storage.retention_check_interval)
