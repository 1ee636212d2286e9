"""Alerting and recording rules at run time, with Prometheus' semantics.

An alerting rule keeps one `Alert` per label set its expression returned: new ones are
pending from the evaluation that first saw them (`active_at`), fire once they have been
pending for `for`, and turn inactive (resolved) on the first evaluation without them; a
resolved alert stays 15 minutes so its resolution is resent. `ALERTS` and
`ALERTS_FOR_STATE` samples are made for every pending or firing alert once the rule's
`for` state has been restored (see `_forstate.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sluiceway.logql import (
    Expr,
    QueryResult,
    ScalarResult,
    VectorResult,
    format_loki,
    parse,
)
from sluiceway.ruler._rulefmt import Rule
from sluiceway.ruler._templates import expand

Sample = tuple[dict[str, str], float]
# The LogQL engine at one instant: (tenant, expression, Unix ns) -> samples.
QueryFunc = Callable[[str, Expr, int], list[Sample]]
Key = tuple[tuple[str, str], ...]

RESOLVED_RETENTION_NS = 15 * 60 * 10**9  # Prometheus keeps a resolved alert this long


NOT_A_VECTOR = "rule result is not a vector or scalar"


def samples_of(result: QueryResult) -> list[Sample]:
    """An instant query's answer as rule samples: a vector's, or a scalar's one."""
    data = result.data
    if isinstance(data, VectorResult):
        return [(dict(labels), value) for labels, value in data.samples]
    if isinstance(data, ScalarResult):
        return [({}, data.value)]
    raise ValueError(NOT_A_VECTOR)


def key_of(labels: Mapping[str, str]) -> Key:
    return tuple(sorted(labels.items()))


@dataclass(slots=True)
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    active_at: int  # Unix ns
    state: str = "pending"  # pending | firing | inactive
    fired_at: int = 0
    resolved_at: int = 0
    last_sent_at: int = 0
    valid_until: int = 0
    keep_firing_since: int = 0

    def needs_sending(self, ts: int, resend_delay_ns: int) -> bool:
        if self.state == "pending":
            return False
        if self.resolved_at > self.last_sent_at:
            return True
        return self.last_sent_at + resend_delay_ns < ts


@dataclass(slots=True)
class RuleStatus:
    """What the API shows of a rule's last evaluation."""

    health: str = "unknown"  # unknown | ok | err
    last_error: str = ""
    last_evaluation_wall: float = 0.0  # Unix seconds (wall clock), 0: never
    evaluation_time: float = 0.0


class RecordingRule:
    kind = "recording"

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.record
        self.expr = parse(rule.expr)
        self.query_text = format_loki(self.expr)
        self.status = RuleStatus()

    def eval(self, tenant: str, ts: int, query: QueryFunc,
             limit: int = 0) -> list[tuple[dict[str, str], float]]:
        out: dict[Key, tuple[dict[str, str], float]] = {}
        for labels, value in query(tenant, self.expr, ts):
            lb = {**labels, "__name__": self.name, **self.rule.labels}
            k = key_of(lb)
            if k in out:
                raise ValueError("vector contains metrics with the same labelset after "
                                 "applying rule labels")
            out[k] = (lb, value)
        if limit and len(out) > limit:
            raise ValueError(f"exceeded limit of {limit} with {len(out)} series")
        return list(out.values())


class AlertingRule:
    kind = "alerting"

    def __init__(self, rule: Rule, external_labels: Mapping[str, str],
                 external_url: str) -> None:
        self.rule = rule
        self.name = rule.alert
        self.expr = parse(rule.expr)
        self.query_text = format_loki(self.expr)
        self.hold_ns = rule.for_ms * 1_000_000
        self.keep_firing_ns = rule.keep_firing_for_ms * 1_000_000
        self.external_labels = dict(external_labels)
        self.external_url = external_url
        self.active: dict[Key, Alert] = {}
        self.restored = False
        self.status = RuleStatus()

    def state(self) -> str:
        if self.status.health == "unknown":
            return "unknown"
        states = {a.state for a in self.active.values()}
        return "firing" if "firing" in states else "pending" if "pending" in states \
            else "inactive"

    def active_alerts(self) -> list[Alert]:
        return [a for a in self.active.values() if a.state != "inactive"]

    def eval(self, tenant: str, ts: int, query: QueryFunc, limit: int = 0) -> None:
        seen: dict[Key, Alert] = {}
        for labels, value in query(tenant, self.expr, ts):
            base = {k: v for k, v in labels.items() if k != "__name__"}
            lb = dict(base)
            for name, text in self.rule.labels.items():
                lb[name] = expand(text, base, value, self.external_labels, self.external_url)
            lb["alertname"] = self.name
            annotations = {name: expand(text, base, value, self.external_labels,
                                        self.external_url)
                           for name, text in self.rule.annotations.items()}
            lb = dict(sorted(lb.items()))
            annotations = dict(sorted(annotations.items()))
            k = key_of(lb)
            if k in seen:
                raise ValueError("vector contains metrics with the same labelset after "
                                 "applying alert labels")
            seen[k] = Alert(lb, annotations, value, ts)
        for k, a in seen.items():
            cur = self.active.get(k)
            if cur is not None and cur.state != "inactive":
                cur.value, cur.annotations = a.value, a.annotations
            else:
                self.active[k] = a
        for k, a in list(self.active.items()):
            if k not in seen:
                keep = False
                if a.state == "firing" and self.keep_firing_ns:
                    a.keep_firing_since = a.keep_firing_since or ts
                    keep = ts - a.keep_firing_since < self.keep_firing_ns
                if a.state == "pending" or (a.resolved_at and
                                            ts - a.resolved_at > RESOLVED_RETENTION_NS):
                    del self.active[k]
                if a.state != "inactive" and not keep:
                    a.state, a.resolved_at = "inactive", ts
                if not keep:
                    continue
            else:
                a.keep_firing_since = 0
            if a.state == "pending" and ts - a.active_at >= self.hold_ns:
                a.state, a.fired_at = "firing", ts
        n = len(self.active_alerts())
        if limit and n > limit:
            self.active.clear()
            raise ValueError(f"exceeded limit of {limit} with {n} alerts")

    def series(self, ts: int) -> list[tuple[dict[str, str], float]]:
        """`ALERTS` and `ALERTS_FOR_STATE` samples at `ts` (after the restore)."""
        if not self.restored:
            return []
        out = []
        for a in self.active_alerts():
            out.append(({**a.labels, "__name__": "ALERTS", "alertstate": a.state}, 1.0))
            out.append(({**a.labels, "__name__": "ALERTS_FOR_STATE"},
                        float(a.active_at // 10**9)))
        return out

    def to_send(self, ts: int, resend_delay_ns: int, interval_ns: int) -> list[Alert]:
        """The alerts due to go to the Alertmanager now (marked as sent)."""
        out = []
        for a in self.active.values():
            if a.needs_sending(ts, resend_delay_ns):
                a.last_sent_at = ts
                a.valid_until = ts + 4 * max(resend_delay_ns, interval_ns)
                out.append(Alert(dict(a.labels), dict(a.annotations), a.value, a.active_at,
                                 a.state, a.fired_at, a.resolved_at, a.last_sent_at,
                                 a.valid_until))
        return out


AnyRule = RecordingRule | AlertingRule


def timed(fn: Callable[[], Any], status: RuleStatus) -> Any:
    """Run one rule's evaluation, recording its health, error and timing."""
    status.last_evaluation_wall = time.time()
    started = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:
        status.health, status.last_error = "err", str(exc)
        status.evaluation_time = time.perf_counter() - started
        raise
    status.health, status.last_error = "ok", ""
    status.evaluation_time = time.perf_counter() - started
    return out


@dataclass(slots=True)
class EvalOutput:
    """What one group evaluation produced for the outside: samples to remote-write and
    alerts to notify."""

    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    alerts: list[tuple[AlertingRule, list[Alert]]] = field(default_factory=list)
