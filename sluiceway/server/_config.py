"""Server configuration: YAML file, then `SLUICEWAY_<SECTION>__<KEY>` environment overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sluiceway.model import Bytes, Duration


def _csv(value: Any) -> Any:
    """Loki's comma-separated string lists (`a,b,c`), or a list (YAML, or `[...]` in an
    environment variable)."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value  # not a list: the validation error names the field
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


# NoDecode: an environment value is a comma-separated list too, not only JSON.
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_csv)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSection(_Section):
    listen: str = "127.0.0.1:3100"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_size: Bytes = 64 << 20
    default_tenant: str = "fake"
    auth_enabled: bool = False  # when true, X-Scope-OrgID is required (401 without)
    heartbeat_stale_factor: float = 3.0
    heartbeat_max_size: Bytes = 64 * 1024  # larger heartbeats get 413
    heartbeat_max_reporters: Annotated[int, Field(ge=1)] = 1000  # per tenant; then 429
    ingest_workers: int | None = None  # decode processes; default: one per core beyond the first


class QuerierSection(_Section):
    # Loki's flag: `X-Scope-OrgID: a|b` queries both tenants (400 while false).
    multi_tenant_queries_enabled: bool = False


class StorageSection(_Section):
    data_dir: Path = Path("./data")
    wal_sync: Literal["always", "interval"] = "always"
    wal_sync_interval: Duration = 0.1
    wal_segment_size: Bytes = 128 << 20
    max_wal_size: Bytes = 2 << 30
    chunk_target_size: Bytes = 4 << 20
    max_chunk_age: Duration = 7200.0
    chunk_idle_period: Duration = 1800.0
    compression_level: Annotated[int, Field(ge=1, le=19)] = 1
    flush_check_period: Duration = 10.0
    retention_period: Duration = 0.0
    retention_check_interval: Duration = 600.0
    cache_size: Bytes = 512 << 20
    flush_on_shutdown: bool = True
    compaction_enabled: bool = True
    compaction_level: Annotated[int, Field(ge=1, le=22)] = 17
    compaction_target_size: Bytes = 16 << 20
    compaction_min_age: Duration = 900.0
    compaction_interval: Duration = 600.0


class LimitsSection(_Section):
    max_line_size: Bytes = 256_000
    max_line_size_truncate: bool = False
    reject_old_samples: bool = True
    reject_old_samples_max_age: Duration = 7 * 86400.0
    creation_grace_period: Duration = 600.0
    unordered_window: Duration = 3600.0  # Loki: max_chunk_age / 2
    max_label_names_per_series: int = 15
    max_label_name_length: int = 1024
    max_label_value_length: int = 2048
    max_structured_metadata_size: Bytes = 64 * 1024
    max_structured_metadata_entries_count: int = 128
    max_entries_limit_per_query: int = 5000
    max_query_length: Duration = 721 * 3600.0
    max_query_series: int = 500
    query_timeout: Duration = 60.0
    max_concurrent_tail_requests: Annotated[int, Field(ge=0)] = 10  # per tenant; 0: no limit
    max_tail_buffer_size: Bytes = 4 << 20  # per live tail session, before entries are dropped
    # Loki's defaults are 4 / 6; off here until set: a single node has no neighbours to
    # protect, and a default that refuses a busy app's logs is the surprise we avoid.
    ingestion_rate_mb: Annotated[float, Field(ge=0)] = 0.0
    ingestion_burst_size_mb: Annotated[float, Field(ge=0)] = 6.0
    # Loki's default: active streams per tenant; 0 = no limit.
    max_global_streams_per_user: Annotated[int, Field(ge=0)] = 5000
    # Structured metadata on pushes (Loki's default: allowed); false refuses such lines.
    allow_structured_metadata: bool = True
    # Every line gets `detected_level` (Loki's discover_log_levels, on by default): worked
    # out when lines are read, from these fields (labels, metadata, JSON, logfmt) or words;
    # empty: Loki's list (level, LEVEL, Level, log.level, severity, …, lvl, …).
    discover_log_levels: bool = True
    log_level_fields: CsvList = []
    log_level_from_json_max_depth: int = 2
    # JSON lines are mined for patterns from the first of these string fields (Loki's).
    pattern_ingester_tokenizable_json_fields_default: CsvList = [
        "log", "message", "msg", "msg_", "_msg", "content"]
    pattern_ingester_tokenizable_json_fields_append: CsvList = []
    pattern_ingester_tokenizable_json_fields_delete: CsvList = []

    def tokenizable_json_fields(self) -> list[str]:
        drop = set(self.pattern_ingester_tokenizable_json_fields_delete)
        fields = (self.pattern_ingester_tokenizable_json_fields_default
                  + self.pattern_ingester_tokenizable_json_fields_append)
        return [f for f in dict.fromkeys(fields) if f not in drop]


class PatternIngesterSection(_Section):
    """Loki's `pattern_ingester`: Drain patterns mined from pushed lines, per stream and
    level, for `/loki/api/v1/patterns`. On by default here (Loki: off): the miner is its
    own low-priority process, so pushes do not wait for it."""

    enabled: bool = True
    retain_for: Duration = 3 * 3600.0
    max_clusters: Annotated[int, Field(ge=1)] = 300  # per stream and level
    max_eviction_ratio: Annotated[float, Field(ge=0)] = 0.25
    max_allowed_line_length: Annotated[int, Field(ge=1)] = 3000
    pattern_sample_interval: Duration = 10.0
    # Sluiceway's bounds: streams mined per tenant (the rest are counted, not mined) and
    # bytes of pushes waiting for the miner (past it, pushes are counted, not mined).
    max_streams_per_tenant: Annotated[int, Field(ge=1)] = 10_000
    max_queued_bytes: Bytes = 64 << 20


class Config(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_", env_nested_delimiter="__",
                                      extra="forbid")
    server: ServerSection = ServerSection()
    querier: QuerierSection = QuerierSection()
    storage: StorageSection = StorageSection()
    limits: LimitsSection = LimitsSection()
    pattern_ingester: PatternIngesterSection = PatternIngesterSection()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings  # environment wins over the YAML file


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says what and where."""


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of sections")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
    try:
        return Config(**data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{where}:\n" + "\n".join(lines)) from exc
