"""What a cluster process needs to know: `ClusterConfig` (the server turns its `cluster:`
YAML section and `--cluster` / `--role` into one) and the names it derives: streams,
subjects and buckets, all under one name prefix so two clusters can share one NATS."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

ROLES = ("all", "distributor", "ingester", "querier", "compactor")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    urls: tuple[str, ...]
    role: str = "all"
    name_prefix: str = "sluiceway-"  # streams, KV buckets, object bucket, subjects
    partitions: int = 16  # tenant + stream fingerprint over these; changing it needs a drain
    partitions_per_stream: int = 4  # each stream has one Raft leader: spread the ingest
    replicas: int = 3  # streams and buckets; capped at the cluster's size (logged)
    lease_ttl_s: float = 10.0  # an ingester's partitions move within this after it dies
    flush_cap_bytes: int = 64 << 20  # unflushed bytes per partition before a forced flush
    max_payload: int = 1 << 20  # JetStream messages are cut below this (nats-server default)
    connect_timeout_s: float = 5.0  # per attempt; attempts go on until connected
    request_timeout_s: float = 5.0  # JetStream API and heads requests
    creds_file: str = ""
    nkey_seed_file: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Messages of a partition stay in its stream this long after they are in chunks, so
    # a reader that saw the older recorded sequence finds them still there.
    purge_delay_s: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("cluster mode needs at least one NATS URL")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not _NAME.fullmatch(self.name_prefix.rstrip("-_") or "x"):
            raise ValueError(f"name prefix {self.name_prefix!r} may hold only letters, "
                             "digits, '-' and '_'")
        if self.partitions < 1 or self.partitions_per_stream < 1:
            raise ValueError("partitions and partitions per stream must be at least 1")
        if not 1 <= self.replicas <= 5:
            raise ValueError(f"replicas must be 1 to 5, got {self.replicas}")

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
