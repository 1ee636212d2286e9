"""Rules at run time, with the real LogQL engine over an in-memory source: the alert
life cycle, what goes to the Alertmanager and to remote write, `for` state restore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluiceway.logql import Expr, MemorySource, QueryParams, evaluate
from sluiceway.model import StreamBatch
from sluiceway.ruler import (
    GroupRuntime,
    RulerConfig,
    Sample,
    parse_group,
    samples_of,
)
from sluiceway.ruler._forstate import ForStateFile, restore
from sluiceway.ruler._notify import am_alert, generator_url, rfc3339_ms
from sluiceway.ruler._templates import expand, humanize, humanize_duration

S = 10**9
T0 = 1_796_400_000 * S  # an evaluation time, whole seconds


class Logs:
    """Lines in memory and the ruler's view of them: instant LogQL queries."""

    def __init__(self) -> None:
        self.src = MemorySource()

    def push(self, labels: dict[str, str], *ts: int) -> None:
        self.src.push("fake", [StreamBatch(labels, list(ts), [f"error {t}" for t in ts])])

    def query(self, tenant: str, expr: Expr, ts: int) -> list[Sample]:
        return samples_of(evaluate(self.src, expr, QueryParams(
            tenants=[tenant], start=ts, end=ts, instant=True)))


GROUP = """\
name: g
interval: 10s
rules:
  - alert: Errors
    expr: sum by (app) (count_over_time({env="prod"} |= "error" [1m])) > 0
    for: 20s
    labels: {severity: page, owner: 'team-{{ $labels.app }}'}
    annotations: {summary: '{{ $value }} errors in {{ $labels.app }}'}
  - record: app:errors:count1m
    expr: sum by (app) (count_over_time({env="prod"} |= "error" [1m]))
    labels: {source: ruler}
"""


def runtime(tmp: Path | None = None, **cfg: float) -> GroupRuntime:
    c = RulerConfig.model_validate({"resend_delay": 60, "for_grace_period": 0, **cfg})
    return GroupRuntime("fake", "ns", parse_group(GROUP), c, tmp)


def names(samples: list[Sample]) -> list[tuple[str, str, float]]:
    return sorted((s[0]["__name__"], s[0].get("alertstate", ""), s[1]) for s in samples)


def test_pending_firing_resolved_and_what_goes_out() -> None:
    logs = Logs()
    logs.push({"app": "api", "env": "prod"}, T0 - 5 * S, T0 - 4 * S)
    g = runtime()
    out = g.evaluate(T0, logs.query)
    alert = g.alerting()[0]
    [a] = alert.active_alerts()
    assert (a.state, a.active_at, a.value) == ("pending", T0, 2.0)
    assert a.labels == {"alertname": "Errors", "app": "api", "owner": "team-api",
                        "severity": "page"}
    assert a.annotations == {"summary": "2 errors in api"}
    # first evaluation: recording samples, no ALERTS yet (the for state is being restored)
    assert names(out.samples) == [("app:errors:count1m", "", 2.0)]
    assert out.samples[0][0] == {"__name__": "app:errors:count1m", "app": "api",
                                 "source": "ruler"}
    assert out.alerts == []  # pending alerts are not sent
    out = g.evaluate(T0 + 10 * S, logs.query)
    assert names(out.samples) == [("ALERTS", "pending", 1.0), ("ALERTS_FOR_STATE", "", T0 / S),
                                  ("app:errors:count1m", "", 2.0)]
    out = g.evaluate(T0 + 20 * S, logs.query)  # pending for 20 s: fires
    assert a.state == "firing" and a.fired_at == T0 + 20 * S
    [(_, [sent])] = out.alerts
    assert sent.valid_until == T0 + 20 * S + 4 * 60 * S
    am = am_alert(sent, {"cluster": "eu", "app": "ignored"}, "http://x/#/explore?query=q")
    assert am == {"annotations": {"summary": "2 errors in api"},
                  "endsAt": rfc3339_ms(T0 + 260 * S), "startsAt": rfc3339_ms(T0 + 20 * S),
                  "generatorURL": "http://x/#/explore?query=q",
                  "labels": {"alertname": "Errors", "app": "api", "owner": "team-api",
                             "severity": "page", "cluster": "eu"}}
    assert g.evaluate(T0 + 30 * S, logs.query).alerts == []  # not resent before resend_delay
    [(_, [res])] = g.evaluate(T0 + 90 * S, logs.query).alerts  # lines left the window
    assert res.state == "inactive" and a.resolved_at == T0 + 90 * S


def test_resolution_is_sent_once_then_resent_every_resend_delay() -> None:
    logs = Logs()
    logs.push({"app": "api", "env": "prod"}, T0 - S)
    g = runtime()
    g.alerting()[0].hold_ns = 0
    assert len(g.evaluate(T0, logs.query).alerts) == 1  # fires at once
    out = g.evaluate(T0 + 60 * S, logs.query)  # the line is out of [1m]: resolved
    [(_, [sent])] = out.alerts
    assert (sent.state, sent.resolved_at) == ("inactive", T0 + 60 * S)
    assert am_alert(sent, {}, "")["endsAt"] == rfc3339_ms(T0 + 60 * S)
    assert g.evaluate(T0 + 70 * S, logs.query).alerts == []
    assert len(g.evaluate(T0 + 121 * S, logs.query).alerts) == 1  # resent after a minute
    assert g.evaluate(T0 + 60 * S + 16 * 60 * S, logs.query).alerts == []  # forgotten
    assert g.alerting()[0].active == {}


def test_a_failing_rule_is_reported_and_the_others_still_run() -> None:
    logs = Logs()
    logs.push({"app": "api", "env": "prod"}, T0 - S)
    logs.push({"app": "api", "env": "prod", "pod": "2"}, T0 - S)
    g = GroupRuntime("fake", "ns", parse_group(
        "name: g\nrules:\n"
        "  - alert: Dup\n    expr: count_over_time({env=\"prod\"}[1m]) > 0\n"
        "    labels: {pod: same}\n"
        "  - alert: Logs\n    expr: '{env=\"prod\"}'\n"
        "  - record: ok\n    expr: vector(1)\n"), RulerConfig())
    out = g.evaluate(T0, logs.query)
    dup, log_rule, rec = g.rules
    assert dup.status.health == "err" and "same labelset after applying alert labels" in \
        dup.status.last_error
    assert log_rule.status.health == "err" and "not supported as an instant query" in \
        log_rule.status.last_error
    assert rec.status.health == "ok" and out.samples == [({"__name__": "ok"}, 1.0)]


def test_for_state_survives_a_restart(tmp_path: Path) -> None:
    logs = Logs()
    logs.push({"app": "api", "env": "prod"}, *(T0 + i * S for i in range(-5, 100)))
    g = runtime(tmp_path)
    for i in range(2):  # pending for 10 s
        g.evaluate(T0 + i * 10 * S, logs.query)
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["saved_at"] == T0 + 10 * S
    assert [a["active_at"] for a in saved["alerts"]] == [T0]
    # down for 30 s; the new process evaluates first, then restores
    g2 = runtime(tmp_path)
    g2.evaluate(T0 + 40 * S, logs.query)
    [a] = g2.alerting()[0].active_alerts()
    assert a.active_at == T0 + 30 * S  # 10 s of its 20 s were spent before the outage
    g2.evaluate(T0 + 50 * S, logs.query)
    assert a.state == "firing"  # 20 s pending in all, not 20 s after the restart


@pytest.mark.parametrize("pending_s,grace_s,down_s,want_offset_s", [
    (25, 0, 30, 0),     # was already firing: keeps its old active_at, fires next time
    (15, 10, 30, 45 + 10 - 20),  # 5 s left < grace 10 s: fires a grace period from now
    (5, 10, 30, 0 + 30),  # 15 s left: the outage does not count as pending
])
def test_restore_follows_prometheus(tmp_path: Path, pending_s: int, grace_s: int,
                                    down_s: int, want_offset_s: int) -> None:
    logs = Logs()
    logs.push({"app": "api", "env": "prod"}, *(T0 + i * S for i in range(-5, 200)))
    g = runtime(tmp_path)
    g.evaluate(T0, logs.query)
    g.evaluate(T0 + pending_s * S, logs.query)
    down_at = T0 + pending_s * S
    g2 = runtime(tmp_path, for_grace_period=grace_s)
    ts = down_at + down_s * S
    g2.evaluate(ts, logs.query)
    [a] = g2.alerting()[0].active_alerts()
    assert a.active_at == T0 + want_offset_s * S


def test_no_restore_past_the_outage_tolerance_or_for_short_rules(tmp_path: Path) -> None:
    logs = Logs()
    logs.push({"app": "api", "env": "prod"}, *(T0 + i * S for i in range(-5, 4000)))
    g = runtime(tmp_path)
    g.evaluate(T0, logs.query)
    g.evaluate(T0 + 10 * S, logs.query)
    late = runtime(tmp_path, for_outage_tolerance=60)
    late.evaluate(T0 + 100 * S, logs.query)
    assert late.alerting()[0].active_alerts()[0].active_at == T0 + 100 * S
    rules = runtime(None).alerting()
    state = ForStateFile(tmp_path, "fake", "ns", "g").load()
    assert state is not None
    restore(rules, state, T0 + 20 * S, 3600 * S, 30 * S)  # for 20s < grace 30s
    assert all(r.restored for r in rules)


def test_templates_and_links() -> None:
    assert expand("{{ $value | humanize }} on {{ .Labels.app }}, {{ $labels.nope }}",
                  {"app": "api"}, 1234567.0, {}, "") == "1.235M on api, <no value>"
    assert expand("{{ $externalLabels.cluster }} {{ $externalURL }}", {}, 0,
                  {"cluster": "eu"}, "http://s") == "eu http://s"
    assert expand("{{ nope }}", {}, 0, {}, "").startswith("<error expanding template: ")
    assert (humanize(0.012), humanize_duration(3725), humanize_duration(0.5)) == \
        ("12m", "1h 2m 5s", "500ms")
    assert generator_url("http://host:3100/", 'sum(rate({a="b"}[1m])) > 0') == (
        "http://host:3100/#/explore?query=sum%28rate%28%7Ba%3D%22b%22%7D%5B1m%5D%29%29%20"
        "%3E%200")


def test_a_rule_added_to_a_running_group_writes_alerts_at_once() -> None:
    logs = Logs()
    logs.push({"app": "api", "env": "prod"}, T0 - S)
    g = runtime()
    g.evaluate(T0, logs.query)
    edited = parse_group(GROUP + "  - alert: Another\n    expr: vector(1)\n")
    g2 = GroupRuntime("fake", "ns", edited, g.cfg, g.state_dir)
    g2.take_state(g)
    out = g2.evaluate(T0 + 10 * S, logs.query)
    assert ("ALERTS", "firing", 1.0) in names(out.samples)  # `Another`, new, not restored
    assert g2.alerting()[0].active is g.alerting()[0].active  # the old rule kept its alerts
