"""The ruler with its real neighbours: Debian's `prometheus-alertmanager` (an alert arrives
and resolves) and `prometheus` with its remote-write receiver (a recorded series and
`ALERTS` are queryable there); and a pending alert that keeps its `for` state across a
SIGKILL and restart."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.monitoring import Alertmanager, CaptureServer, Prometheus, wait_until
from tests.procs import ServerProcess

S = 10**9


def start_server(tmp: Path, ruler: str = "") -> ServerProcess:
    cfg = tmp / "sluiceway.yaml"
    cfg.write_text(f"""\
ruler:
  evaluation_interval: 1s
  poll_interval: 1s
  external_labels: {{cluster: test}}
{ruler}""")
    return ServerProcess(tmp / "data", config=cfg).start()


def post_group(srv: ServerProcess, namespace: str, group: str) -> None:
    r = httpx.post(f"{srv.url}/loki/api/v1/rules/{namespace}", content=group,
                   headers={"Content-Type": "application/yaml"})
    assert r.status_code == 202, r.text


def push(srv: ServerProcess, labels: dict[str, str], lines: list[str], ts: int) -> None:
    body = {"streams": [{"stream": labels, "values": [[str(ts), line] for line in lines]}]}
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=orjson.dumps(body),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text


def test_an_alert_arrives_in_alertmanager_and_resolves(tmp_path: Path) -> None:
    hook = CaptureServer(200)
    am = Alertmanager(tmp_path, f"{hook.url}/hook")
    srv = start_server(tmp_path, f"  alertmanager_url: {am.url}\n")
    try:
        post_group(srv, "team-am", """\
name: am
interval: 1s
rules:
  - alert: AppErrors
    expr: sum by (app) (count_over_time({app="am-test"} |= "error" [1m])) > 0
    labels: {severity: page}
    annotations: {summary: '{{ $value }} errors in {{ $labels.app }}'}
""")
        # In the 1m window for about 15 s: the alert fires, then resolves on its own.
        push(srv, {"app": "am-test"}, ["error one", "error two"], time.time_ns() - 45 * S)

        def in_am() -> list[dict[str, Any]]:
            return [a for a in am.alerts() if a["labels"].get("alertname") == "AppErrors"]

        [alert] = wait_until(in_am, "the alert in the Alertmanager", proc_logs=srv.log)
        assert alert["labels"] == {"alertname": "AppErrors", "app": "am-test",
                                   "cluster": "test", "severity": "page"}
        assert alert["annotations"] == {"summary": "2 errors in am-test"}
        assert alert["status"]["state"] == "active"

        def webhooks(status: str) -> list[dict[str, Any]]:
            got = [json.loads(r.body) for r in hook.on("/hook")]
            return [p for p in got if p["status"] == status]

        fired = wait_until(lambda: webhooks("firing"), "the firing webhook")[0]
        resolved = wait_until(lambda: webhooks("resolved"), "the resolved webhook",
                              proc_logs=srv.log)[0]
        assert [a["labels"]["app"] for a in fired["alerts"]] == ["am-test"]
        assert resolved["alerts"][0]["status"] == "resolved"
        assert resolved["alerts"][0]["startsAt"] == fired["alerts"][0]["startsAt"]
    finally:
        srv.stop()
        am.stop()
        hook.close()


def test_recorded_series_and_alerts_are_queryable_in_prometheus(tmp_path: Path) -> None:
    prom = Prometheus(tmp_path)
    srv = start_server(tmp_path, f"""\
  remote_write:
    enabled: true
    client:
      url: {prom.url}/api/v1/write
      queue_config: {{batch_send_deadline: 200ms}}
""")
    try:
        post_group(srv, "team-rw", """\
name: rw
interval: 1s
rules:
  - record: app:error_lines:count5m
    expr: sum by (app) (count_over_time({app="rw-test"} |= "error" [5m]))
  - alert: RwErrors
    expr: sum by (app) (count_over_time({app="rw-test"} |= "error" [5m])) > 2
""")
        push(srv, {"app": "rw-test"}, ["error a", "error b", "error c"], time.time_ns() - S)
        got = wait_until(lambda: prom.query('app:error_lines:count5m{app="rw-test"}'),
                         "the recorded series in Prometheus", proc_logs=srv.log)
        assert got[0]["metric"] == {"__name__": "app:error_lines:count5m", "app": "rw-test",
                                    "cluster": "test"}
        assert got[0]["value"][1] == "3"
        alerts = wait_until(lambda: prom.query('ALERTS{alertname="RwErrors"}'),
                            "ALERTS in Prometheus", proc_logs=srv.log)
        assert alerts[0]["metric"]["alertstate"] == "firing"
        for_state = prom.query('ALERTS_FOR_STATE{alertname="RwErrors"}')
        assert float(for_state[0]["value"][1]) <= time.time()
        assert 'sluiceway_ruler_remote_write_samples_sent_total{' in httpx.get(
            f"{srv.url}/metrics").text
    finally:
        srv.stop()
        prom.stop()


def _state_file(data: Path) -> dict[str, Any]:
    files = list((data / "ruler_state" / "for-state").glob("*.json"))
    got: dict[str, Any] = json.loads(files[0].read_text()) if files else {}
    return got


def test_a_pending_alert_keeps_its_for_state_across_a_restart(tmp_path: Path) -> None:
    ruler = "  for_grace_period: 0s\n"
    srv = start_server(tmp_path, ruler)
    post_group(srv, "team-fs", """\
name: fs
interval: 1s
rules:
  - alert: Slow
    expr: count_over_time({app="fs-test"}[1h]) > 0
    for: 1h
""")
    push(srv, {"app": "fs-test"}, ["a line"], time.time_ns() - S)

    def pending_for_3s() -> dict[str, Any] | None:
        st = _state_file(srv.data_dir)
        alerts = st.get("alerts") or []
        if alerts and st["saved_at"] - alerts[0]["active_at"] >= 3 * S:
            return st
        return None

    wait_until(pending_for_3s, "the alert pending for 3 s", proc_logs=srv.log)
    srv.kill()  # SIGKILL: only what is on disk counts
    st = _state_file(srv.data_dir)
    active_at, down_at = st["alerts"][0]["active_at"], st["saved_at"]
    restart = time.time_ns()
    srv.start()
    try:
        def alert() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = httpx.get(
                f"{srv.url}/prometheus/api/v1/alerts").json()["data"]["alerts"]
            return got

        [a] = wait_until(alert, "the alert after the restart", proc_logs=srv.log)
        read_at = time.time_ns()
        assert a["state"] == "pending"
        base, _, frac = a["activeAt"].removesuffix("Z").partition(".")
        restored = (calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * S
                    + int(frac.ljust(9, "0")))
        # Prometheus' rule: the time pending before the outage counts, the outage does
        # not; so active_at moved forward by exactly the outage (first evaluation - down).
        first_eval = restored - active_at + down_at
        assert restart <= first_eval <= read_at, (restart, first_eval, read_at)
        assert (first_eval - down_at) % S == 0  # evaluations are whole intervals apart
        assert restored - active_at == first_eval - down_at > 0
    finally:
        srv.stop()
