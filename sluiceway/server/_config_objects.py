"""Where the server keeps its chunks: `storage.backend` and its sections.

- `filesystem` (default; `local` is read as it): files under `<data_dir>/tenants`.
- `s3`: an S3-compatible bucket, `storage.s3` with the key names of Loki's
  `storage_config.aws` / `common.storage.s3` (`bucketnames`, `endpoint`, `region`,
  `access_key_id`, `secret_access_key`, `session_token`, `insecure`, `s3forcepathstyle`)
  and of its object store's `storage_prefix`.
- `nats`: a NATS JetStream object store bucket, `storage.nats`.

Only chunks move: the WAL and each tenant's index stay in the data dir.
"""

from __future__ import annotations

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

ObjectBackend = Literal["filesystem", "s3", "nats"]


def _backend(value: object) -> object:
    return "filesystem" if value == "local" else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class S3Section(_Section):
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


class NatsSection(_Section):
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


class ObjectsFields(_Section):
    """The fields `storage` gets from here (mixed into `StorageSection`)."""

    backend: Annotated[ObjectBackend, BeforeValidator(_backend)] = "filesystem"
    s3: S3Section | None = None
    nats: NatsSection | None = None

    @model_validator(mode="after")
    def _backend_has_its_section(self) -> ObjectsFields:
        if self.backend == "s3" and self.s3 is None:
            raise ValueError("backend is s3 but there is no storage.s3 section (it needs "
                             "bucketnames at least)")
        if self.backend == "nats" and self.nats is None:
            self.nats = NatsSection()
        return self
