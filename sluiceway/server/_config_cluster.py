"""The `cluster:` section (and `--cluster` / `--role`): cluster mode on NATS JetStream.
Empty `urls` (the default) is single-node mode, unchanged."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from sluiceway.cluster import ClusterConfig
from sluiceway.model import Bytes, Duration

Role = Literal["all", "distributor", "ingester", "querier", "compactor"]


def _urls(value: Any) -> Any:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class ClusterSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # NATS servers of one cluster (comma-separated or a list); empty: single-node mode.
    urls: Annotated[list[str], BeforeValidator(_urls)] = []
    role: Role = "all"
    # Streams, KV buckets, the object store bucket and subjects all start with this, so
    # two Sluiceway clusters can share one NATS.
    name_prefix: str = "sluiceway-"
    # Streams are spread over these by tenant and stream fingerprint. Changing the count
    # needs a drain (README: Cluster mode).
    partitions: Annotated[int, Field(ge=1, le=4096)] = 16
    partitions_per_stream: Annotated[int, Field(ge=1, le=4096)] = 4
    replicas: Annotated[int, Field(ge=1, le=5)] = 3  # capped at the NATS cluster's size
    lease_ttl: Annotated[Duration, Field(ge=1, le=300)] = 10.0
    flush_cap: Bytes = 64 << 20  # unflushed bytes per partition before a forced flush
    max_payload: Bytes = 1 << 20  # nats-server's max_payload (its default: 1 MB)
    purge_delay: Annotated[Duration, Field(ge=0)] = 60.0
    timeout: Annotated[Duration, Field(gt=0)] = 5.0  # per NATS request and connect attempt
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
        return bool(self.urls)

    def config(self) -> ClusterConfig:
        return ClusterConfig(
            urls=tuple(self.urls), role=self.role, name_prefix=self.name_prefix,
            partitions=self.partitions, partitions_per_stream=self.partitions_per_stream,
            replicas=self.replicas, lease_ttl_s=self.lease_ttl, flush_cap_bytes=self.flush_cap,
            max_payload=self.max_payload, connect_timeout_s=self.timeout,
            request_timeout_s=self.timeout, creds_file=self.creds_file,
            nkey_seed_file=self.nkey_seed_file, user=self.user, password=self.password,
            token=self.token, tls_ca_file=self.tls_ca_file, tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file, purge_delay_s=self.purge_delay)
