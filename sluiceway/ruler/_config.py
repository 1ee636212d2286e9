"""The ruler's configuration: the server's `ruler:` and `ruler_storage:` sections are
these models, embedded as they are (Loki's key names and defaults). The ruler, its
notifier and its remote writer read them as they are (`Ruler.from_config`).

Durations are seconds (YAML takes `10s`, `1m`); paths left empty live under the server's
`storage.data_dir` (`ruler_state` for `rule_path`, `rules` for the filesystem store).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sluiceway.model import Duration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoteWriteQueue(_Section):
    # samples waiting per tenant; past it the oldest are dropped (counted)
    capacity: Annotated[int, Field(ge=1)] = 10_000
    max_samples_per_send: Annotated[int, Field(ge=1)] = 2000
    batch_send_deadline: Duration = 5.0
    min_backoff: Duration = 0.03
    max_backoff: Duration = 5.0


class RemoteWriteClient(_Section):
    url: str
    name: str = ""
    remote_timeout: Duration = 30.0
    headers: dict[str, str] = {}
    queue_config: RemoteWriteQueue = RemoteWriteQueue()


class RemoteWriteConfig(_Section):
    enabled: bool = False
    client: RemoteWriteClient | None = None  # Loki's older single-client key
    clients: dict[str, RemoteWriteClient] = {}
    add_org_id_header: bool = True
    config_refresh_period: Duration = 10.0  # accepted; the config is read once

    def all_clients(self) -> list[RemoteWriteClient]:
        out = [self.client] if self.client is not None else []
        return out + [c.model_copy(update={"name": c.name or n}) for n, c in
                      sorted(self.clients.items())]


class LocalRulesDir(_Section):
    directory: Path | None = None


class FilesystemRulesDir(_Section):
    dir: Path | None = None


class LegacyRulerStorage(_Section):
    type: Literal["local", "filesystem"] = "local"
    local: LocalRulesDir = LocalRulesDir()
    filesystem: FilesystemRulesDir = FilesystemRulesDir()


class RulerConfig(_Section):
    rule_path: Path | None = None  # the ruler's own state (for-state); default data_dir/ruler_state
    alertmanager_url: str = ""  # comma-separated; empty: alerts are evaluated, not sent
    external_url: str = ""  # prefix of each alert's generatorURL (this server's UI)
    external_labels: dict[str, str] = {}
    evaluation_interval: Annotated[Duration, Field(gt=0)] = 60.0
    poll_interval: Annotated[Duration, Field(gt=0)] = 60.0
    enable_api: bool = True
    resend_delay: Duration = 60.0
    for_outage_tolerance: Duration = 3600.0
    for_grace_period: Duration = 600.0
    notification_queue_capacity: Annotated[int, Field(ge=1)] = 10_000
    notification_timeout: Duration = 10.0
    remote_write: RemoteWriteConfig = RemoteWriteConfig()
    wal: dict[str, Any] = {}  # Loki's ruler WAL settings: accepted, no meaning here
    # Loki's older spelling of `ruler_storage` (`type` for `backend`); used when the
    # config has no `ruler_storage:` section.
    storage: LegacyRulerStorage | None = None

    def alertmanager_urls(self) -> list[str]:
        return [u.strip() for u in self.alertmanager_url.split(",") if u.strip()]


class RulerStorageConfig(_Section):
    # `local`: rule files read from `local.directory/<tenant>/`, read-only (the API
    # refuses writes, as Loki's); `filesystem`: the rules API writes there too.
    backend: Literal["local", "filesystem"] = "filesystem"
    local: LocalRulesDir = LocalRulesDir()
    filesystem: FilesystemRulesDir = FilesystemRulesDir()
