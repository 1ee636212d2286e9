"""One rule group at run time: its rules, their state, one evaluation at a time."""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

from sluiceway.ruler._config import RulerConfig
from sluiceway.ruler._forstate import ForStateFile, StateHome, restore
from sluiceway.ruler._rulefmt import RuleGroup
from sluiceway.ruler._rules import (
    AlertingRule,
    AnyRule,
    EvalOutput,
    QueryFunc,
    RecordingRule,
    timed,
)

log = logging.getLogger("sluiceway.ruler")


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


class GroupRuntime:
    def __init__(self, tenant: str, namespace: str, group: RuleGroup, cfg: RulerConfig,
                 state_dir: StateHome | None = None) -> None:
        """`state_dir`: where for-state is kept (a directory, or the cluster's KV; None:
        not across restarts)."""
        self.tenant, self.namespace, self.group = tenant, namespace, group
        self.cfg, self.state_dir = cfg, state_dir
        self.interval_ns = group.interval_ms * 1_000_000 or _ns(cfg.evaluation_interval)
        self.rules: list[AnyRule] = [
            AlertingRule(r, cfg.external_labels, cfg.external_url) if r.alert
            else RecordingRule(r) for r in group.rules]
        self.lock = threading.Lock()  # evaluation (a worker thread) vs. the API's views
        self.last_evaluation_wall = 0.0
        self.evaluation_time = 0.0
        self.evaluations = 0
        self.failures = 0
        self.forstate = (ForStateFile(state_dir, tenant, namespace, group.name)
                         if state_dir is not None else None)
        self.saved = self.forstate.load() if self.forstate is not None else None
        self.first = True

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tenant, self.namespace, self.group.name

    def alerting(self) -> list[AlertingRule]:
        return [r for r in self.rules if isinstance(r, AlertingRule)]

    def take_state(self, old: GroupRuntime) -> None:
        """Keep what an edited group's unchanged rules knew (Prometheus' CopyState)."""
        prev = {(r.kind, r.name, r.rule.expr): r for r in old.rules}
        for r in self.rules:
            o = prev.get((r.kind, r.name, r.rule.expr))
            if o is None:
                if isinstance(r, AlertingRule):
                    r.restored = not old.first  # nothing to restore for a new rule
                continue
            r.status = o.status
            if isinstance(r, AlertingRule) and isinstance(o, AlertingRule):
                r.active, r.restored = o.active, o.restored
        self.first, self.saved = old.first, old.saved
        self.last_evaluation_wall, self.evaluation_time = (old.last_evaluation_wall,
                                                           old.evaluation_time)

    def evaluate(self, ts: int, query: QueryFunc) -> EvalOutput:
        """Evaluate every rule at `ts` (Unix ns); a failing rule is recorded and the
        others still run."""
        out = EvalOutput()
        with self.lock:
            wall, started = time.time(), time.perf_counter()
            limit = self.group.limit
            for rule in self.rules:
                try:
                    got = timed(partial(rule.eval, self.tenant, ts, query, limit),
                                rule.status)
                    if isinstance(rule, RecordingRule):
                        out.samples += got
                        continue
                except Exception as exc:
                    self.failures += 1
                    log.warning("rule %s in group %s/%s (tenant %s) failed: %s", rule.name,
                                self.namespace, self.group.name, self.tenant, exc)
                if isinstance(rule, AlertingRule):
                    out.samples += rule.series(ts)
                    due = rule.to_send(ts, _ns(self.cfg.resend_delay), self.interval_ns)
                    if due:
                        out.alerts.append((rule, due))
            if self.first:
                restore(self.alerting(), self.saved, ts, _ns(self.cfg.for_outage_tolerance),
                        _ns(self.cfg.for_grace_period))
                self.first, self.saved = False, None
            if self.forstate is not None:
                try:
                    self.forstate.save(ts, self.alerting())
                except OSError as exc:
                    log.warning("cannot save for-state of group %s/%s: %s", self.namespace,
                                self.group.name, exc)
            self.evaluations += 1
            self.last_evaluation_wall = wall
            self.evaluation_time = time.perf_counter() - started
        return out
