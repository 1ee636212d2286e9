"""Rule groups and alerts in the shapes of Prometheus' API, as Loki serves them at
`/prometheus/api/v1/rules` and `/prometheus/api/v1/alerts`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sluiceway.logql import go_float
from sluiceway.ruler._group import GroupRuntime
from sluiceway.ruler._rules import Alert, AlertingRule, RecordingRule

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano: fraction without trailing zeros."""
    dt = datetime.fromtimestamp(ns // 10**9, UTC)
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def _wall(seconds: float) -> str:
    return rfc3339_nano(round(seconds * 1e9)) if seconds else ZERO_TIME


def alert_json(a: Alert) -> dict[str, Any]:
    return {"labels": a.labels, "annotations": a.annotations, "state": a.state,
            "activeAt": rfc3339_nano(a.active_at), "value": go_float(a.value, "e")}


def _alerting(r: AlertingRule) -> dict[str, Any]:
    s = r.status
    return {"state": r.state(), "name": r.name, "query": r.query_text,
            "duration": _number(r.hold_ns / 1e9), "labels": r.rule.labels,
            "annotations": r.rule.annotations,
            "alerts": [alert_json(a) for a in r.active_alerts()],
            "health": s.health, "lastError": s.last_error, "type": "alerting",
            "lastEvaluation": _wall(s.last_evaluation_wall),
            "evaluationTime": s.evaluation_time}


def _recording(r: RecordingRule) -> dict[str, Any]:
    s = r.status
    return {"name": r.name, "query": r.query_text, "labels": r.rule.labels,
            "health": s.health, "lastError": s.last_error, "type": "recording",
            "lastEvaluation": _wall(s.last_evaluation_wall),
            "evaluationTime": s.evaluation_time}


def _number(x: float) -> float | int:
    return int(x) if x == int(x) else x


def rules_json(groups: list[GroupRuntime], kind: str = "", files: Collection[str] = (),
               group_names: Collection[str] = (), rule_names: Collection[str] = ()
               ) -> dict[str, Any]:
    """`data` of /prometheus/api/v1/rules; `kind` is `alert`, `record` or empty."""
    out = []
    for g in groups:
        if (files and g.namespace not in files) or (group_names and
                                                    g.group.name not in group_names):
            continue
        with g.lock:
            rules = []
            for r in g.rules:
                if (kind == "alert" and not isinstance(r, AlertingRule)) or (
                        kind == "record" and not isinstance(r, RecordingRule)) or (
                        rule_names and r.name not in rule_names):
                    continue
                rules.append(_alerting(r) if isinstance(r, AlertingRule) else _recording(r))
            entry = {"name": g.group.name, "file": g.namespace, "rules": rules,
                     "interval": _number(g.interval_ns / 1e9), "limit": g.group.limit,
                     "lastEvaluation": _wall(g.last_evaluation_wall),
                     "evaluationTime": g.evaluation_time}
        if rules or not (kind or rule_names):
            out.append(entry)
    return {"groups": out}


def alerts_json(groups: list[GroupRuntime]) -> dict[str, Any]:
    """`data` of /prometheus/api/v1/alerts: every pending or firing alert."""
    alerts = []
    for g in groups:
        with g.lock:
            for r in g.rules:
                if isinstance(r, AlertingRule):
                    alerts += [alert_json(a) for a in r.active_alerts()]
    return {"alerts": alerts}
