"""Server configuration: YAML file (ours, or Loki's: see `_loki_config`), then
`SLUICEWAY_<SECTION>__<KEY>` environment overrides. Each section is its component's own
model: `storage` and `compactor` are `sluiceway.store`'s `StoreConfig` and
`CompactorConfig`, passed to the store as they are (never copied field by field), and
`cluster` is `sluiceway.cluster.ClusterConfig`, passed to the cluster node likewise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sluiceway.cluster import ClusterConfig
from sluiceway.logql import QueryError, parse_selector
from sluiceway.model import Bytes, Duration, LokiBytes, config_error_text, validation_messages
from sluiceway.patterns import PatternIngesterConfig
from sluiceway.ruler import RulerConfig, RulerStorageConfig
from sluiceway.server._loki_config import translate
from sluiceway.store import CompactorConfig, DeletionMode, StoreConfig


def _log_level(value: object) -> object:
    return "warning" if value == "warn" else value  # Loki's spelling


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
    log_level: Annotated[Literal["debug", "info", "warning", "error"],
                         BeforeValidator(_log_level)] = "info"
    max_body_size: Bytes = 64 << 20
    default_tenant: str = "fake"
    auth_enabled: bool = False  # when true, X-Scope-OrgID is required (401 without)
    heartbeat_stale_factor: float = 3.0
    heartbeat_forget_after: Duration = Field(default=3600.0, gt=0)  # a card without one
    heartbeat_max_size: Bytes = 64 * 1024  # larger heartbeats get 413
    heartbeat_max_reporters: Annotated[int, Field(ge=1)] = 1000  # per tenant; then 429
    # The ledger's sources per tenant (lines of sources past it count as unattributed).
    ledger_max_sources: Annotated[int, Field(ge=1)] = 10_000
    ingest_workers: int | None = None  # decode processes; default: one per core beyond the first
    # Bytes of pushes being handled (bodies, then their records, until answered); a push
    # that would pass it waits for room before its body is read. 0: no bound.
    max_inflight_push_bytes: Bytes = 64 << 20
    # Results of closed query splits kept in memory (Loki's results cache); 0 = off.
    results_cache_size: Bytes = 100 << 20


class QuerierSection(_Section):
    # Loki's flag: `X-Scope-OrgID: a|b` queries both tenants (400 while false).
    multi_tenant_queries_enabled: bool = False


class RuntimeConfigSection(_Section):
    """Loki's `runtime_config`: per-tenant `overrides:` of the limits in these YAML files
    (comma-separated), re-read every `period` without a restart."""

    file: str | None = None
    period: Duration = Field(default=10.0, gt=0)

    @property
    def files(self) -> list[Path]:
        return [Path(f.strip()) for f in (self.file or "").split(",") if f.strip()]


class StreamRetention(_Section):
    """One rule of Loki's `retention_stream`: streams `selector` matches keep their data
    `period`; of several matching rules the highest `priority` wins, then the shortest
    period."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    selector: str
    period: Duration
    priority: int = 0

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        try:
            parse_selector(v)
        except QueryError as exc:
            raise ValueError(f"not a stream selector: {exc}") from None
        return v


class LimitsSection(_Section):
    """Loki's `limits_config`, per tenant (`runtime_config` overrides). Sizes here are
    Loki's: `1KB` is 1024 bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_line_size: LokiBytes = 256 << 10  # Loki's 256KB
    max_line_size_truncate: bool = False
    reject_old_samples: bool = True
    reject_old_samples_max_age: Duration = 7 * 86400.0
    creation_grace_period: Duration = 600.0
    unordered_window: Duration = 3600.0  # Loki: max_chunk_age / 2
    max_label_names_per_series: int = 15
    max_label_name_length: int = 1024
    max_label_value_length: int = 2048
    max_structured_metadata_size: LokiBytes = 64 << 10
    max_structured_metadata_entries_count: int = 128
    max_entries_limit_per_query: int = 5000
    max_query_length: Duration = 721 * 3600.0
    # Loki's: reads see at most this far back (start moved up, or an empty answer); 0: all.
    max_query_lookback: Duration = 0.0
    max_query_series: int = 500
    query_timeout: Duration = 60.0
    # Query execution (Loki's names): threads of one query (capped by the cores), the
    # time split, and bytes of log lines a query may read (0 = no limit).
    max_query_parallelism: Annotated[int, Field(ge=1)] = 32
    split_queries_by_interval: Duration = 3600.0
    max_query_bytes_read: LokiBytes = 0  # flagext.ByteSize: 1KB = 1024, as Loki
    max_cache_freshness_per_query: Duration = 600.0  # newer splits are never cached
    max_concurrent_tail_requests: Annotated[int, Field(ge=0)] = 10  # per tenant; 0: no limit
    max_tail_buffer_size: LokiBytes = 4 << 20  # per live tail session, then entries drop
    # Loki's defaults are 4 / 6; off here until set: a single node has no neighbours to
    # protect, and a default that refuses a busy app's logs is the surprise we avoid.
    ingestion_rate_mb: Annotated[float, Field(ge=0)] = 0.0
    ingestion_burst_size_mb: Annotated[float, Field(ge=0)] = 6.0
    # Loki's: "global" (each of N distributors of a cluster enforces rate / N; one
    # process alone enforces all of it) or "local" (each enforces the whole rate).
    ingestion_rate_strategy: Literal["global", "local"] = "global"
    # Loki's default: active streams per tenant; 0 = no limit.
    max_global_streams_per_user: Annotated[int, Field(ge=0)] = 5000
    # Bytes per second per stream, bursts to `_burst` (Loki's 15MB). 0 = no limit: off
    # until set, like the tenant rate (Loki's default is 3MB).
    per_stream_rate_limit: LokiBytes = 0
    per_stream_rate_limit_burst: LokiBytes = 15 << 20
    # Applies only with `compactor.retention_enabled` (Loki's rule); 0: keep forever.
    retention_period: Duration = 0.0
    # Per-stream retention (Loki's shape), with `compactor.retention_enabled` too.
    retention_stream: tuple[StreamRetention, ...] = ()
    # Loki's delete API per tenant: `filter-only` hides lines at read, `filter-and-delete`
    # also has the compactor remove them after `delete_request_cancel_period`.
    deletion_mode: DeletionMode = "filter-and-delete"
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


class Config(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_", env_nested_delimiter="__",
                                      extra="forbid")
    server: ServerSection = ServerSection()
    querier: QuerierSection = QuerierSection()
    # The store's own models (`sluiceway.store`), embedded as they are.
    storage: StoreConfig = StoreConfig()
    limits: LimitsSection = LimitsSection()
    pattern_ingester: PatternIngesterConfig = PatternIngesterConfig()  # sluiceway.patterns'
    ruler: RulerConfig = RulerConfig()  # the ruler's own models (`sluiceway.ruler`)
    ruler_storage: RulerStorageConfig = RulerStorageConfig()
    compactor: CompactorConfig = CompactorConfig()
    runtime_config: RuntimeConfigSection = RuntimeConfigSection()
    # sluiceway.cluster's own model: `urls` empty (the default) is single-node mode.
    cluster: ClusterConfig = ClusterConfig()
    # Keys of a Loki config that have no effect here (dotted, as the file spells them).
    _loki_ignored: list[str] = PrivateAttr(default_factory=list)

    @property
    def loki_ignored(self) -> list[str]:
        return self._loki_ignored

    def retention_period(self, limits: LimitsSection) -> float:
        """Seconds a tenant with `limits` keeps its data (0: forever): Loki's
        `retention_period` with `compactor.retention_enabled`, else `storage.retention_period`."""
        if self.compactor.retention_enabled and limits.retention_period > 0:
            return limits.retention_period
        return self.storage.retention_period

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


def _sections() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {}
    for name, f in Config.model_fields.items():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            out[name] = f.annotation
    return out


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (our YAML, or a Loki config), apply dotted `overrides` (CLI flags) and
    the environment. Raises ConfigError with one line per problem."""
    data: dict[str, Any] = {}
    where = f"invalid configuration in {path}" if path else "invalid configuration"
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
    t = translate(data, _sections())
    data = t.data
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        if not isinstance(data.get(section), dict):
            data[section] = {}
        data[section][key] = value

    def spell(loc: tuple[str | int, ...]) -> str:
        parts = [str(p) for p in loc]
        if parts and parts[0] in t.spelled:
            parts[0] = t.spelled[parts[0]]
        return ".".join(parts)

    try:
        cfg = Config(**data)
    except ValidationError as exc:
        errors = [*t.errors, *validation_messages(exc, Config, spell)]
        raise ConfigError(config_error_text(where, errors)) from exc
    if t.errors:
        raise ConfigError(config_error_text(where, t.errors))
    cfg._loki_ignored = t.ignored
    for key in ("retention_period", "retention_stream"):
        if getattr(cfg.limits, key) and not cfg.compactor.retention_enabled:
            cfg._loki_ignored.append(f"{t.spelled.get('limits', 'limits')}.{key} "
                                     "(without compactor.retention_enabled: true, as in Loki)")
    return cfg
