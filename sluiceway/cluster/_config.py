"""What a cluster process needs to know: `ClusterConfig`, the server's `cluster:` YAML
section itself (with `--cluster` / `--role`; key names, defaults and units are the
YAML's: `10s`, `1MiB` through `model.Duration`, `model.Bytes`), and the names it derives:
streams, subjects and buckets, all under one name prefix so two clusters can share one
NATS. Empty `urls` (the default) is single-node mode: `enabled` is false and nothing
here connects."""

from __future__ import annotations

import contextlib
import json
import zlib
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from sluiceway.model import Bytes, Duration

Role = Literal["all", "distributor", "ingester", "querier", "compactor", "ruler"]
ROLES: tuple[str, ...] = get_args(Role)


def _urls(value: Any) -> Any:
    """A list, or comma-separated (`--cluster a,b`, `SLUICEWAY_CLUSTER__URLS=a,b`), or a
    JSON list in an environment variable."""
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # NATS servers of one cluster (comma-separated or a list); empty: single-node mode.
    urls: Annotated[list[str], NoDecode, BeforeValidator(_urls)] = []
    role: Role = "all"
    # Streams, KV buckets, the object store bucket and subjects all start with this, so
    # two Sluiceway clusters can share one NATS.
    name_prefix: str = "sluiceway-"
    # Streams are spread over these by tenant and stream fingerprint. Changing the count
    # needs a drain (README: Cluster mode).
    partitions: Annotated[int, Field(ge=1, le=4096)] = 16
    # Each stream has one Raft leader: spread the ingest over several.
    partitions_per_stream: Annotated[int, Field(ge=1, le=4096)] = 4
    replicas: Annotated[int, Field(ge=1, le=5)] = 3  # capped at the NATS cluster's size (logged)
    # An ingester's partitions move within this after it dies.
    lease_ttl: Annotated[Duration, Field(ge=1, le=300)] = 10.0
    flush_cap: Bytes = 64 << 20  # unflushed bytes per partition before a forced flush
    max_payload: Bytes = 1 << 20  # nats-server's max_payload (its default: 1 MB)
    # Messages of a partition stay in its stream this long after they are in chunks, so
    # a reader that saw the older recorded sequence finds them still there.
    purge_delay: Annotated[Duration, Field(ge=0)] = 60.0
    # Per NATS request (JetStream API, heads) and per connect attempt (attempts go on
    # until connected).
    timeout: Annotated[Duration, Field(gt=0)] = 5.0
    creds_file: str = ""  # a NATS credentials file (JWT + nkey seed)
    nkey_seed_file: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @field_validator("urls")
    @classmethod
    def _nats_urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not u.startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"{u!r} is not a NATS URL (nats://HOST:PORT)")
        return v

    @field_validator("name_prefix")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or not all(c.isascii() and (c.isalnum() or c in "-_") for c in v):
            raise ValueError(f"{v!r} may hold only letters, digits, '-' and '_' (stream and "
                             "bucket names)")
        return v

    @property
    def enabled(self) -> bool:
        """Cluster mode (NATS URLs given); code that connects checks this first."""
        return bool(self.urls)

    def has(self, role: str) -> bool:
        return self.role in ("all", role)

    # --- names ---------------------------------------------------------------------
    @property
    def streams(self) -> int:
        return -(-self.partitions // self.partitions_per_stream)

    def stream_of(self, partition: int) -> str:
        return f"{self.name_prefix}ingest-{partition // self.partitions_per_stream}"

    def stream_partitions(self, index: int) -> range:
        lo = index * self.partitions_per_stream
        return range(lo, min(self.partitions, lo + self.partitions_per_stream))

    def subject(self, partition: int) -> str:
        return f"{self.name_prefix}ingest.{partition}"

    def bucket(self, what: str) -> str:
        """A KV or object bucket: `leases`, `offsets`, `members`, `chunks`."""
        return f"{self.name_prefix}{what}"

    def heads_subject(self, member: str) -> str:
        """Where an ingester answers for its unflushed data (`_heads`)."""
        return f"{self.name_prefix}heads.{member}"


def partition_of(tenant: str, fp: int, partitions: int) -> int:
    """The partition of a stream: tenant and stream fingerprint, stable across processes
    and releases (CRC-32 of both)."""
    h = zlib.crc32(fp.to_bytes(8, "little", signed=False), zlib.crc32(tenant.encode()))
    return h % partitions
