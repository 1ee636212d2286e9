"""The agent's YAML config as pydantic models: validated once here, typed everywhere else."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from sluiceway.model import (
    config_error_text,
    did_you_mean,
    parse_duration,
    parse_size,
    validation_messages,
)
from sluiceway.ship import RetryPolicy
from sluiceway.wire import base_url

Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
ENV_PREFIX = "SLUICEWAY_AGENT__"


class ConfigError(ValueError):
    """A config the agent cannot run with; the message says where and why (exit code 2)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class QueueConfig(_Model):
    capacity: int = Field(default=3200, ge=1, description="max lines held in memory")
    max_bytes: Size = Field(default=16 * 1024**2, ge=1024)
    when_full: Literal["block", "drop", "spill"] = "spill"
    drop: Literal["newest", "oldest"] = "newest"
    spill_max_bytes: Size = Field(default=1024**3, ge=4096)
    when_spill_full: Literal["block", "drop"] = "block"


class BatchConfig(_Model):
    max_lines: int = Field(default=1000, ge=1)
    max_bytes: Size = Field(default=1024**2, ge=1)
    max_wait: Duration = Field(default=1.0, ge=0)


class AuthConfig(_Model):
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> AuthConfig:
        if self.bearer_token and self.username:
            raise ValueError("use either username/password or bearer_token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        return self


class TLSConfig(_Model):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


# ---- pipeline stages: one model per stage; the YAML form is a list of {name: options} ----
# Names and keys are Promtail's, so a Promtail `pipeline_stages` list is a valid pipeline.

class JsonStage(_Model):
    # field -> JMESPath expression (empty: the field's own name); none: every top-level key
    expressions: dict[str, str | None] = {}
    source: str | None = None
    drop_malformed: bool = False


class LogfmtStage(_Model):
    mapping: dict[str, str | None] = {}
    source: str | None = None


class RegexStage(_Model):
    expression: str
    source: str | None = None


class ReplaceStage(_Model):
    expression: str
    source: str | None = None
    replace: str = ""


class TemplateStage(_Model):
    source: str
    template: str


class MultilineStage(_Model):
    firstline: str
    max_lines: int = Field(default=128, ge=1)
    max_wait_time: Duration = 3.0


class TimestampStage(_Model):
    source: str
    format: str = "RFC3339"
    fallback_formats: list[str] = []
    location: str | None = None
    action_on_failure: Literal["fudge", "skip"] = "fudge"


class DropStage(_Model):
    source: str | list[str] | None = None
    separator: str = ";"
    expression: str | None = None
    value: str | None = None
    older_than: Duration | None = None
    longer_than: Size | None = None
    drop_counter_reason: str = "drop_stage"


class OutputStage(_Model):
    source: str


class CriStage(_Model):
    max_partial_lines: int = Field(default=100, ge=1)
    max_partial_line_size: Size = 0
    max_partial_line_size_truncate: bool = False


class DockerStage(_Model):
    max_partial_lines: int = Field(default=100, ge=1)


class LabelsStage(_Model):
    # label name -> field name (empty / None: same name)
    fields: dict[str, str]


class StaticLabelsStage(_Model):
    labels: dict[str, str]


class StructuredMetadataStage(_Model):
    # metadata name -> field name (empty / None: same name)
    fields: dict[str, str]


class LabelAllowStage(_Model):
    names: list[str]


class LabelDropStage(_Model):
    names: list[str]


class TenantStage(_Model):
    label: str | None = None
    source: str | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TenantStage:
        if sum(x is not None for x in (self.label, self.source, self.value)) != 1:
            raise ValueError("tenant: give exactly one of label, source, value")
        return self


class LimitStage(_Model):
    rate: float = Field(gt=0)
    burst: int = Field(ge=1)
    drop: bool = False
    by_label_name: str | None = None
    max_distinct_labels: int = Field(default=10000, ge=1)

    @model_validator(mode="after")
    def _by_label_drops(self) -> LimitStage:
        if self.by_label_name and not self.drop:
            raise ValueError("limit: by_label_name needs drop: true")
        return self


class SamplingStage(_Model):
    rate: float = Field(ge=0, le=1)
    drop_counter_reason: str = "sampling_stage"


class PackStage(_Model):
    labels: list[str] = []
    ingest_timestamp: bool = True


class DecolorizeStage(_Model):
    pass


class MatchStage(_Model):
    selector: str
    stages: list[Stage] = []
    action: Literal["keep", "drop"] = "keep"
    drop_counter_reason: str = "match_stage"
    pipeline_name: str | None = None

    @model_validator(mode="after")
    def _drop_has_no_stages(self) -> MatchStage:
        if self.action == "drop" and self.stages:
            raise ValueError("match: a drop action takes no stages")
        for st in self.stages:
            if isinstance(st, (MultilineStage, CriStage, DockerStage)):
                raise ValueError("match: multiline, cri and docker join lines and cannot run "
                                 "inside match; put them first in the pipeline")
        return self


StageConfig = (JsonStage | LogfmtStage | RegexStage | ReplaceStage | TemplateStage
               | MultilineStage | TimestampStage | DropStage | OutputStage | CriStage
               | DockerStage | LabelsStage | StaticLabelsStage | StructuredMetadataStage
               | LabelAllowStage | LabelDropStage | TenantStage | LimitStage | SamplingStage
               | PackStage | DecolorizeStage | MatchStage)

_STAGES: dict[str, type[_Model]] = {
    "json": JsonStage, "logfmt": LogfmtStage, "regex": RegexStage, "replace": ReplaceStage,
    "template": TemplateStage, "multiline": MultilineStage, "timestamp": TimestampStage,
    "drop": DropStage, "output": OutputStage, "cri": CriStage, "docker": DockerStage,
    "tenant": TenantStage, "limit": LimitStage, "sampling": SamplingStage, "pack": PackStage,
    "decolorize": DecolorizeStage, "match": MatchStage,
}
# Stages written as a map of names to fields, or a list of names.
_FIELD_MAPS: dict[str, type[LabelsStage] | type[StructuredMetadataStage]] = {
    "labels": LabelsStage, "structured_metadata": StructuredMetadataStage}
_NAME_LISTS: dict[str, type[LabelAllowStage] | type[LabelDropStage]] = {
    "labelallow": LabelAllowStage, "labeldrop": LabelDropStage}
STAGE_NAMES = frozenset([*_STAGES, *_FIELD_MAPS, *_NAME_LISTS, "static_labels"])


def _parse_stage(item: Any) -> Any:
    if not isinstance(item, dict) or len(item) != 1:
        if isinstance(item, BaseModel):
            return item
        raise ValueError(f"a pipeline stage is a one-key mapping like {{json: {{}}}}, got {item!r}")
    (name, opts), = item.items()
    if name in _FIELD_MAPS:
        if isinstance(opts, list):
            opts = {str(n): str(n) for n in opts}
        if not isinstance(opts, dict):
            raise ValueError(f"{name}: expects a list of field names or a {{name: field}} map")
        return _FIELD_MAPS[name](fields={str(k): str(v or k) for k, v in opts.items()})
    if name in _NAME_LISTS:
        if not isinstance(opts, list) and not (isinstance(opts, dict)
                                               and isinstance(opts.get("values"), list)):
            raise ValueError(f"{name}: expects a list of label names")
        names = opts if isinstance(opts, list) else opts["values"]
        return _NAME_LISTS[name](names=[str(n) for n in names])
    if name == "static_labels":
        if not isinstance(opts, dict):
            raise ValueError("static_labels: expects a {label: value} map")
        return StaticLabelsStage(labels={str(k): str(v) for k, v in opts.items()})
    model = _STAGES.get(name)
    if model is None:
        raise ValueError(f"unknown pipeline stage {name!r}{did_you_mean(str(name), STAGE_NAMES)}; "
                         f"known stages: {', '.join(sorted(STAGE_NAMES))}")
    return model.model_validate(opts or {})


Stage = Annotated[StageConfig, BeforeValidator(_parse_stage)]
MatchStage.model_rebuild()
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class RelabelRule(_Model):
    """One of Prometheus' `relabel_configs` (what Promtail's scrape configs take)."""

    source_labels: list[str] = []
    separator: str = ";"
    target_label: str | None = None
    regex: str = "(.*)"
    modulus: int | None = None
    replacement: str = "$1"
    action: Literal["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep", "hashmod",
                    "lowercase", "uppercase", "keepequal", "dropequal"] = "replace"

    @model_validator(mode="after")
    def _needs(self) -> RelabelRule:
        if self.action in ("replace", "hashmod", "lowercase", "uppercase", "keepequal",
                           "dropequal") and not self.target_label:
            raise ValueError(f"relabel action {self.action} needs target_label")
        if self.action == "hashmod" and not self.modulus:
            raise ValueError("relabel action hashmod needs modulus")
        return self


class _InputBase(_Model):
    labels: dict[str, str] = {}
    pipeline: list[Stage] = []
    # Rewrite each target's (or message's) labels before anything is read, as Prometheus'
    # relabeling does; labels starting with `__` are removed afterwards.
    relabel_configs: list[RelabelRule] = []

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _LABEL_RE.match(name):
                raise ValueError(f"invalid label name {name!r}")
        return v


class FileSD(_Model):
    """Targets from JSON or YAML files of `[{targets: [...], labels: {__path__: ...}}]`."""

    type: Literal["file_sd"]
    files: list[str] = Field(min_length=1)
    refresh_interval: Duration = 300.0


class KubernetesPods(_Model):
    """Pods' containers found through the node's log directory
    `<root>/<namespace>_<pod>_<uid>/<container>/`, no API server needed."""

    type: Literal["kubernetes_pods"]
    root: str = "/var/log/pods"
    namespaces: list[str] = []


class FileInput(_InputBase):
    type: Literal["file"]
    paths: list[str] = []
    exclude: list[str] = []
    discovery: Annotated[FileSD | KubernetesPods, Field(discriminator="type")] | None = None
    start_at: Literal["beginning", "end"] = "end"
    poll_interval: Duration = 0.25
    glob_interval: Duration = 1.0
    # How long a file that rotated away (or was deleted) is still read before it is released.
    rotate_wait: Duration = 5.0
    fingerprint_bytes: int = Field(default=1024, ge=16)
    read_bytes: Size = Field(default=1024**2, ge=4096)
    max_line_bytes: Size = Field(default=256 * 1024, ge=64)
    filename_label: bool = True

    @model_validator(mode="after")
    def _has_files(self) -> FileInput:
        if not self.paths and self.discovery is None:
            raise ValueError("a file input needs paths or discovery")
        return self


class StdinInput(_InputBase):
    type: Literal["stdin"]


class SyslogTLS(_Model):
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None


class SyslogInput(_InputBase):
    type: Literal["syslog"]
    listen: str = "127.0.0.1:5514"
    protocol: Literal["udp", "tcp", "both"] = "both"
    # Promote these syslog header fields to labels (hostname, app_name, facility, severity).
    label_fields: list[str] = ["app_name", "severity"]
    # The message's own time (true), or the time it was received (false: Promtail's default).
    use_incoming_timestamp: bool = True
    # The whole message as received (header and all) as the line, not only its text.
    use_rfc5424_message: bool = False
    # Structured data as `__syslog_message_sd_<id>_<name>` for relabel_configs.
    label_structured_data: bool = False
    max_message_length: Size = Field(default=8192, ge=64)
    idle_timeout: Duration = 120.0
    tls: SyslogTLS | None = None


class LokiPushInput(_InputBase):
    """A Loki push endpoint of the agent's own (`/loki/api/v1/push`, and
    `/promtail/api/v1/raw` for plain lines), as Promtail's `loki_push_api`."""

    type: Literal["loki_push"]
    listen: str = "127.0.0.1:3500"
    use_incoming_timestamp: bool = False
    max_body_size: Size = Field(default=16 * 1024**2, ge=1024)


class JournalInput(_InputBase):
    """The systemd journal, read with `journalctl` (`__journal_*` labels for relabeling)."""

    type: Literal["journal"]
    as_json: bool = Field(default=False, alias="json")
    max_age: Duration = 7 * 3600.0
    path: str | None = None
    matches: str | None = None


class DemoInput(_InputBase):
    """Generated sample lines (used by `sluiceway up`)."""

    type: Literal["demo"]
    rate: float = Field(default=5.0, gt=0, description="lines per second")


InputConfig = Annotated[FileInput | StdinInput | SyslogInput | LokiPushInput | JournalInput
                        | DemoInput, Field(discriminator="type")]


def _http_url(v: str) -> str:
    if v == "":  # no top-level url: the backends are `clients`
        return v
    if not re.match(r"^https?://[^/\s]+", v):
        raise ValueError(f"url must start with http:// or https://, got {v!r}")
    return base_url(v)  # the base URL or the full push URL, as Promtail's is written


def _report_url(v: Any) -> Any:
    # `report_url: off` unquoted is YAML's false (and `on` true).
    if v is False:
        return "off"
    return "auto" if v is True else v


# Keys a client takes; an entry of `clients` that leaves one out takes the top-level value.
CLIENT_KEYS = ("tenant", "format", "timeout", "workers", "auth", "tls", "headers", "retry",
               "batch", "external_labels")


class ClientConfig(_Model):
    """One backend: every line goes to each client, through its own queue."""

    url: Annotated[str, AfterValidator(_http_url)]
    tenant: str | None = None
    format: Literal["protobuf", "json"] = "protobuf"
    timeout: Duration = 10.0
    workers: int = Field(default=1, ge=1, le=64)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    headers: dict[str, str] = {}
    retry: RetryPolicy = Field(default_factory=RetryPolicy)  # the delivery loop's own
    batch: BatchConfig = Field(default_factory=BatchConfig)
    # Labels added to every stream sent to this client (a stream's own label wins).
    external_labels: dict[str, str] = {}


class AgentConfig(_Model):
    url: Annotated[str, AfterValidator(_http_url)] = ""
    clients: list[ClientConfig] = []
    tenant: str | None = None
    name: str = Field(default_factory=socket.gethostname)
    data_dir: Path = Path("./agent-data")
    listen: str | None = "127.0.0.1:9080"
    format: Literal["protobuf", "json"] = "protobuf"
    timeout: Duration = 10.0
    # Concurrent push requests. 1 keeps batches strictly in order; more overlap the
    # backend's latency (Loki and Sluiceway accept out-of-order lines within a stream).
    workers: int = Field(default=1, ge=1, le=64)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    headers: dict[str, str] = {}
    retry: RetryPolicy = Field(default_factory=RetryPolicy)  # the delivery loop's own
    queue: QueueConfig = Field(default_factory=QueueConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    external_labels: dict[str, str] = {}
    # "auto": heartbeat to `url` if it is a Sluiceway server; "off"; or an explicit base URL.
    report_url: Annotated[str, BeforeValidator(_report_url)] = "auto"
    heartbeat_interval: Duration = Field(default=5.0, gt=0)
    # The pipeline view on `listen` forgets a reporter this long after its last heartbeat.
    heartbeat_forget_after: Duration = Field(default=3600.0, gt=0)
    positions_sync: Duration = Field(default=1.0, gt=0)
    # A Promtail positions file (`positions: {path: offset}`) read when this agent has no
    # positions of its own yet, so a migration does not send every file again.
    promtail_positions: Path | None = None
    promtail_positions_ignore_invalid: bool = False
    shutdown_timeout: Duration = Field(default=5.0, ge=0)
    inputs: list[InputConfig] = Field(min_length=1)
    # Set by the loader, not read from YAML: what a Promtail config's translation said.
    _notes: Any = PrivateAttr(default=None)

    @property
    def notes(self) -> Any:
        return self._notes

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, doc: Any) -> Any:
        if isinstance(doc, dict) and isinstance(doc.get("clients"), list):
            doc = dict(doc)
            doc["clients"] = [{**{k: doc[k] for k in CLIENT_KEYS if k in doc}, **c}
                              if isinstance(c, dict) else c for c in doc["clients"]]
        return doc

    @model_validator(mode="after")
    def _one_way_to_name_backends(self) -> AgentConfig:
        if bool(self.url) == bool(self.clients):
            raise ValueError("give the backend as url or as a list of clients (not both)")
        return self

    def client_configs(self) -> list[ClientConfig]:
        """Every backend: the `clients`, or the one the top-level keys describe."""
        if self.clients:
            return list(self.clients)
        return [ClientConfig.model_validate({"url": self.url, **{
            k: getattr(self, k) for k in CLIENT_KEYS}})]

    @property
    def first_url(self) -> str:
        return self.client_configs()[0].url


def _set_path(doc: dict[str, Any], path: list[str], value: Any) -> None:
    cur = doc
    for key in path[:-1]:
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = cur[key] = {}
        cur = nxt
    cur[path[-1]] = value


def apply_env(doc: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """`SLUICEWAY_AGENT__QUEUE__WHEN_FULL=drop` overrides `queue.when_full` (YAML-typed value)."""
    for key, raw in sorted(environ.items()):
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            path = key[len(ENV_PREFIX):].lower().split("__")
            _set_path(doc, path, yaml.safe_load(raw) if raw else raw)
    return doc


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(node: Any, environ: dict[str, str], unset_empty: bool = False) -> Any:
    """`${VAR}` / `${VAR:-default}` in string values (after parsing, so comments and
    YAML syntax are never touched by a variable's content). An unset variable without a
    default is an error, or empty with `unset_empty` (Promtail's -config.expand-env)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1) in environ:
            return environ[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        if unset_empty:
            return ""
        raise ConfigError(f"config refers to ${{{m.group(1)}}} but it is not set")
    if isinstance(node, str):
        return _VAR_RE.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, environ, unset_empty) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, environ, unset_empty) for v in node]
    return node


def read_doc(path: Path | str | None, text: str | None) -> dict[str, Any]:
    """The YAML mapping of a config file (or text), or ConfigError."""
    if text is None:
        if path is None:
            raise ConfigError("no config given")
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config {path} is not UTF-8 text: {exc}") from exc
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path or ''} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError("config must be a YAML mapping at the top level")
    return doc


def native_doc(path: Path | str | None = None, text: str | None = None,
               environ: dict[str, str] | None = None,
               expand_env: bool = False) -> tuple[dict[str, Any], Any]:
    """The agent config document of a file (a Promtail config translated), and the
    translation's notes (None for a native config)."""
    from sluiceway.agent._promtail import looks_like_promtail, translate

    env = dict(os.environ if environ is None else environ)
    doc = read_doc(path, text)
    if not looks_like_promtail(doc):
        return apply_env(_expand(doc, env), env), None
    if expand_env:  # Promtail expands only with -config.expand-env
        doc = _expand(doc, env, unset_empty=True)
    native, notes = translate(doc)
    if notes.errors:
        what = f"invalid Promtail config {path}" if path else "invalid Promtail config"
        raise ConfigError(config_error_text(what, notes.errors))
    return apply_env(native, env), notes


def load_config(path: Path | str | None = None, text: str | None = None,
                environ: dict[str, str] | None = None,
                expand_env: bool = False) -> AgentConfig:
    """Read YAML (an agent config, with `${VAR}` / `${VAR:-default}`, or a Promtail
    config), apply env overrides, validate."""
    doc, notes = native_doc(path, text, environ, expand_env)
    kind = "Promtail" if notes is not None else "agent"
    try:
        cfg = AgentConfig.model_validate(doc)
    except ValidationError as exc:
        what = f"invalid {kind} config {path}" if path else f"invalid {kind} config"
        raise ConfigError(config_error_text(
            what, validation_messages(exc, AgentConfig))) from exc
    cfg._notes = notes
    return cfg
