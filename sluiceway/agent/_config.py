"""The agent's YAML config as pydantic models: validated once here, typed everywhere else."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sluiceway.model import config_error_text, parse_duration, parse_size, validation_messages
from sluiceway.wire import base_url

Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
ENV_PREFIX = "SLUICEWAY_AGENT__"


class ConfigError(ValueError):
    """A config the agent cannot run with; the message says where and why (exit code 2)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class RetryConfig(_Model):
    min_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    # None: retry retryable failures forever (the queue, not the shipper, decides what is lost).
    max_retries: int | None = None


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

class JsonStage(_Model):
    expressions: dict[str, str] = {}
    source: str | None = None


class LogfmtStage(_Model):
    mapping: dict[str, str] = {}
    source: str | None = None


class RegexStage(_Model):
    expression: str
    source: str | None = None


class MultilineStage(_Model):
    firstline: str
    max_lines: int = Field(default=128, ge=1)
    max_wait_time: Duration = 3.0


class TimestampStage(_Model):
    source: str
    format: str = "RFC3339"
    fallback_formats: list[str] = []
    action_on_failure: Literal["fudge", "skip"] = "fudge"


class DropStage(_Model):
    source: str | None = None
    expression: str | None = None
    value: str | None = None
    older_than: Duration | None = None
    longer_than: Size | None = None


class OutputStage(_Model):
    source: str


class CriStage(_Model):
    max_partial_lines: int = Field(default=100, ge=1)


class DockerStage(_Model):
    max_partial_lines: int = Field(default=100, ge=1)


class LabelsStage(_Model):
    # label name -> field name (empty / None: same name)
    fields: dict[str, str]


class StaticLabelsStage(_Model):
    labels: dict[str, str]


StageConfig = (JsonStage | LogfmtStage | RegexStage | MultilineStage | TimestampStage
               | DropStage | OutputStage | CriStage | DockerStage | LabelsStage
               | StaticLabelsStage)

_STAGES: dict[str, type[_Model]] = {
    "json": JsonStage, "logfmt": LogfmtStage, "regex": RegexStage,
    "multiline": MultilineStage, "timestamp": TimestampStage, "drop": DropStage,
    "output": OutputStage, "cri": CriStage, "docker": DockerStage,
}


def _parse_stage(item: Any) -> Any:
    if not isinstance(item, dict) or len(item) != 1:
        if isinstance(item, BaseModel):
            return item
        raise ValueError(f"a pipeline stage is a one-key mapping like {{json: {{}}}}, got {item!r}")
    (name, opts), = item.items()
    if name == "labels":
        if isinstance(opts, list):
            opts = {str(n): str(n) for n in opts}
        if not isinstance(opts, dict):
            raise ValueError("labels: expects a list of field names or a {label: field} map")
        return LabelsStage(fields={str(k): str(v or k) for k, v in opts.items()})
    if name == "static_labels":
        if not isinstance(opts, dict):
            raise ValueError("static_labels: expects a {label: value} map")
        return StaticLabelsStage(labels={str(k): str(v) for k, v in opts.items()})
    model = _STAGES.get(name)
    if model is None:
        known = ", ".join(sorted([*_STAGES, "labels", "static_labels"]))
        raise ValueError(f"unknown pipeline stage {name!r}; known stages: {known}")
    return model.model_validate(opts or {})


Stage = Annotated[StageConfig, BeforeValidator(_parse_stage)]
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _InputBase(_Model):
    labels: dict[str, str] = {}
    pipeline: list[Stage] = []

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _LABEL_RE.match(name):
                raise ValueError(f"invalid label name {name!r}")
        return v


class FileInput(_InputBase):
    type: Literal["file"]
    paths: list[str] = Field(min_length=1)
    exclude: list[str] = []
    start_at: Literal["beginning", "end"] = "end"
    poll_interval: Duration = 0.25
    glob_interval: Duration = 1.0
    # How long a file that rotated away (or was deleted) is still read before it is released.
    rotate_wait: Duration = 5.0
    fingerprint_bytes: int = Field(default=1024, ge=16)
    read_bytes: Size = Field(default=1024**2, ge=4096)
    max_line_bytes: Size = Field(default=256 * 1024, ge=64)
    filename_label: bool = True


class StdinInput(_InputBase):
    type: Literal["stdin"]


class SyslogInput(_InputBase):
    type: Literal["syslog"]
    listen: str = "127.0.0.1:5514"
    protocol: Literal["udp", "tcp", "both"] = "both"
    # Promote these syslog header fields to labels (hostname, app_name, facility, severity).
    label_fields: list[str] = ["app_name", "severity"]


class DemoInput(_InputBase):
    """Generated sample lines (used by `sluiceway up`)."""

    type: Literal["demo"]
    rate: float = Field(default=5.0, gt=0, description="lines per second")


InputConfig = Annotated[FileInput | StdinInput | SyslogInput | DemoInput,
                        Field(discriminator="type")]


class AgentConfig(_Model):
    url: str
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
    retry: RetryConfig = Field(default_factory=RetryConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    # "auto": heartbeat to `url` if it is a Sluiceway server; "off"; or an explicit base URL.
    report_url: str = "auto"
    heartbeat_interval: Duration = Field(default=5.0, gt=0)
    # The pipeline view on `listen` forgets a reporter this long after its last heartbeat.
    heartbeat_forget_after: Duration = Field(default=3600.0, gt=0)
    positions_sync: Duration = Field(default=1.0, gt=0)
    shutdown_timeout: Duration = Field(default=5.0, ge=0)
    inputs: list[InputConfig] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"url must start with http:// or https://, got {v!r}")
        return base_url(v)  # the base URL or the full push URL, as Promtail's is written


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


def _expand(node: Any, environ: dict[str, str]) -> Any:
    """`${VAR}` / `${VAR:-default}` in string values (after parsing, so comments and
    YAML syntax are never touched by a variable's content)."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1) in environ:
            return environ[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        raise ConfigError(f"config refers to ${{{m.group(1)}}} but it is not set")
    if isinstance(node, str):
        return _VAR_RE.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, environ) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, environ) for v in node]
    return node


def load_config(path: Path | str | None = None, text: str | None = None,
                environ: dict[str, str] | None = None) -> AgentConfig:
    """Read YAML (with `${VAR}` / `${VAR:-default}`), apply env overrides, validate."""
    env = dict(os.environ if environ is None else environ)
    if text is None:
        if path is None:
            raise ConfigError("no config given")
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        doc = _expand(yaml.safe_load(text) or {}, env)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path or ''} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError("config must be a YAML mapping at the top level")
    try:
        return AgentConfig.model_validate(apply_env(doc, env))
    except ValidationError as exc:
        what = f"invalid agent config {path}" if path else "invalid agent config"
        raise ConfigError(config_error_text(
            what, validation_messages(exc, AgentConfig))) from exc
