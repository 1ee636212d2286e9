"""The ruler: Prometheus-style alerting and recording rules with LogQL expressions,
Loki's ruler format and API shapes.

- `_rulefmt`: rule groups (parse, validate with Loki's messages, print as Loki does).
- `_store`: where groups live (`LocalRuleStore` read-only files, `FilesystemRuleStore`
  written by the API), behind the `RuleStore` interface.
- `_rules`, `_group`: rules and groups at run time (alert states, health).
- `_forstate`: `for` state kept across restarts (`StateBlobs`: a directory, or the
  cluster's KV so it survives a group's move to another member).
- `_notify`: Alertmanager v2 notifications; `_remote`: remote write of samples.
- `_ruler`: the `Ruler` that schedules groups (only those its `GroupShard` claims,
  in cluster mode); `_views`: Prometheus' API shapes.
- `_config`: the server's `ruler:` and `ruler_storage:` sections (`RulerConfig`,
  `RulerStorageConfig`), the ruler's own models, read as they are (`Ruler.from_config`).

It queries through a `QueryFunc` the server gives it (the LogQL engine over the store)
and imports only `logql`, `model`, `wire` and `durable`.
"""

from sluiceway.ruler._config import (
    RemoteWriteClient,
    RemoteWriteConfig,
    RemoteWriteQueue,
    RulerConfig,
    RulerStorageConfig,
)
from sluiceway.ruler._forstate import DirBlobs, StateBlobs, StateHome, state_name
from sluiceway.ruler._group import GroupRuntime
from sluiceway.ruler._notify import Notifier
from sluiceway.ruler._remote import RemoteWriter
from sluiceway.ruler._rulefmt import (
    Rule,
    RuleFormatError,
    RuleGroup,
    dump_group,
    dump_namespaces,
    dump_rule_file,
    format_duration_ms,
    parse_duration_ms,
    parse_group,
    parse_rule_file,
)
from sluiceway.ruler._ruler import GroupKey, GroupShard, Ruler
from sluiceway.ruler._rules import (
    Alert,
    AlertingRule,
    QueryFunc,
    RecordingRule,
    Sample,
    samples_of,
)
from sluiceway.ruler._store import (
    FilesystemRuleStore,
    LoadedRules,
    LocalRuleStore,
    RuleStore,
    RuleStoreError,
)
from sluiceway.ruler._views import alerts_json, rfc3339_nano, rules_json

__all__ = [
    "Alert", "AlertingRule", "DirBlobs", "FilesystemRuleStore", "GroupKey", "GroupRuntime",
    "GroupShard", "StateBlobs", "StateHome", "LoadedRules",
    "LocalRuleStore", "Notifier", "QueryFunc", "RecordingRule", "RemoteWriteClient",
    "RemoteWriteConfig", "RemoteWriteQueue", "RemoteWriter", "Rule", "RuleFormatError",
    "RuleGroup", "RuleStore", "RuleStoreError", "Ruler", "RulerConfig", "RulerStorageConfig",
    "Sample", "alerts_json", "dump_group", "dump_namespaces", "dump_rule_file",
    "format_duration_ms", "parse_duration_ms", "parse_group", "parse_rule_file",
    "rfc3339_nano", "rules_json", "samples_of", "state_name",
]
