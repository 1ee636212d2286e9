"""Replay the ruler recordings made against a real Loki (groups `ruler` and `rulerapi`) on
the real server, in the recorded order, and compare status, content type and body: YAML
byte for byte, texts exactly (the rules path of this run in place of Loki's), JSON with
only the times that differ on every run set aside. The requests Loki itself made to the
Alertmanager and the remote-write receiver are compared field by field with ours.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import cramjam
import httpx
import orjson

from sluiceway.wire import decode_write_request
from tests.monitoring import CaptureServer, wait_until
from tests.procs import FIXTURES, ServerProcess

RESP = FIXTURES / "responses"
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
ZERO = "0001-01-01T00:00:00Z"
# Every recording of the two groups, and where this file replays it.
RULERAPI_ORDER = [
    "rulesapi_list_empty", "rulesapi_post", "rulesapi_post_second", "rulesapi_list",
    "rulesapi_namespace", "rulesapi_group", "rulesapi_post_bad_yaml", "rulesapi_post_bad_expr",
    "rulesapi_prometheus_rules", "rulesapi_delete_group", "rulesapi_namespace_after_delete",
    "rulesapi_group_after_delete", "rulesapi_delete_group_missing", "rulesapi_delete_namespace",
    "rulesapi_list_after_delete_namespace"]
RULER_FILE_ORDER = [
    "rules_list", "rules_namespace", "rules_namespace_no_ext", "rules_namespace_missing",
    "rules_group_local", "rules_post_local", "rules_delete_group_local"]
RULER_FIRING = ["prometheus_rules", "prometheus_rules_type_alert", "prometheus_alerts"]
RULER_RESOLVED = ["prometheus_alerts_resolved", "prometheus_rules_resolved"]
# The rules file of the `ruler` group (README: team-x.yaml, group app-x, interval 10s).
TEAM_X = """\
groups:
  - name: app-x
    interval: {interval}
    rules:
      - alert: AppXErrors
        expr: sum(count_over_time({{app="x"}} |= "error" [1m])) > 0
        for: 0s
        labels:
          severity: critical
          team: sluiceway
        annotations:
          summary: app x logged errors
          description: '{{{{ $value }}}} error lines in the last minute'
      - record: app_x:error_lines:count1m
        expr: sum by (app) (count_over_time({{app="x"}} |= "error" [1m]))
        labels:
          source: loki-ruler
"""


def test_every_ruler_recording_is_replayed() -> None:
    recorded = {p.name.removesuffix(".request.json") for p in RESP.glob("*.request.json")
                if p.name.startswith(("rules_", "rulesapi_", "prometheus_"))}
    assert recorded == set(RULERAPI_ORDER + RULER_FILE_ORDER + RULER_FIRING + RULER_RESOLVED)


def _req(name: str) -> dict[str, Any]:
    req: dict[str, Any] = json.loads((RESP / f"{name}.request.json").read_text())
    return req


def _send(srv: ServerProcess, name: str) -> tuple[dict[str, Any], httpx.Response]:
    req = _req(name)
    body = req.get("body")
    r = httpx.request(req["method"], f"{srv.url}{req['path']}", params=req["params"],
                      headers=req["headers"], content=body.encode() if body else None,
                      timeout=10)
    return req, r


def _times_aside(data: Any) -> Any:
    """The fields that differ on every run: evaluation times and durations."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in ("lastEvaluation", "activeAt"):
                assert RFC3339NANO.match(v), v
                out[k] = "never" if v == ZERO else "time"
            elif k == "evaluationTime":
                out[k] = "zero" if v == 0 else "measured"
            else:
                out[k] = _times_aside(v)
        return out
    if isinstance(data, list):
        return [_times_aside(x) for x in data]
    return data


def replay(srv: ServerProcess, name: str, rules_dir: Path | None = None,
           adjust: Any = None) -> Any:
    """Send one recorded request; check status, content type and body. Returns ours."""
    req, r = _send(srv, name)
    assert r.status_code == req["status"], (name, r.text)
    assert r.headers["content-type"].split(";")[0] == req["contentType"].split(";")[0], name
    loki_text = (RESP / req["responseFile"]).read_text()
    if req["responseFile"].endswith(".yaml"):
        assert r.text == loki_text, name
        return r.text
    if req["responseFile"].endswith(".txt"):
        if rules_dir is not None:
            loki_text = loki_text.replace("$LOKI_DIR/data/rules", str(rules_dir))
        assert r.text.strip() == loki_text.strip(), name
        return r.text
    ours, loki = r.json(), json.loads(loki_text)
    if adjust is not None:
        ours = adjust(ours)
    assert _times_aside(ours) == _times_aside(loki), name
    return ours


def _server(tmp: Path, ruler_yaml: str) -> ServerProcess:
    cfg = tmp / "sluiceway.yaml"
    cfg.write_text(ruler_yaml)
    return ServerProcess(tmp / "data", config=cfg).start()


def test_rules_api_replay(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    srv = _server(tmp_path, f"""\
ruler:
  evaluation_interval: 10s
  poll_interval: 10s
ruler_storage:
  backend: filesystem
  filesystem:
    dir: {rules}
""")
    try:
        for name in RULERAPI_ORDER:
            if name == "rulesapi_prometheus_rules":
                # Recorded once the ruler had read the store, before any evaluation (an
                # interval of 1m). Should the first evaluation come first here, it is an
                # inactive rule with an `ok` health that we compare instead.
                wait_until(lambda: httpx.get(f"{srv.url}/prometheus/api/v1/rules").json()
                           ["data"]["groups"], "the ruler to read the store")
                replay(srv, name, adjust=_only_app_y_2)
                continue
            replay(srv, name, rules)
        # a write is a rule file in the rules directory, replaced atomically
        assert not any(p.suffix != ".yaml" for p in rules.rglob("*") if p.is_file())
    finally:
        srv.stop()


def _only_app_y_2(ours: dict[str, Any]) -> dict[str, Any]:
    """Loki listed only the group written last (app-y-2) although both were in its
    store; we list both: compare the one Loki showed."""
    groups = ours["data"]["groups"]
    assert [g["name"] for g in groups] == ["app-y", "app-y-2"]
    ours["data"]["groups"] = [g for g in groups if g["name"] == "app-y-2"]
    return _unevaluated(ours)


def _unevaluated(ours: dict[str, Any]) -> dict[str, Any]:
    for g in ours["data"]["groups"]:
        if g["lastEvaluation"] != ZERO:
            g["lastEvaluation"], g["evaluationTime"] = ZERO, 0
            for r in g["rules"]:
                assert r["health"] == "ok" and r.get("state", "inactive") == "inactive", r
                r["health"], r["lastEvaluation"], r["evaluationTime"] = "unknown", ZERO, 0
                if "state" in r:
                    r["state"] = "unknown"
    return ours


def _interval_10(ours: dict[str, Any]) -> dict[str, Any]:
    """The firing part runs the recorded group with `interval: 1s` instead of 10s."""
    for g in ours["data"].get("groups", []):
        assert g["interval"] == 1
        g["interval"] = 10
    return ours


def test_ruler_replay_with_alertmanager_and_remote_write(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "fake").mkdir(parents=True)
    team_x = rules / "fake" / "team-x.yaml"
    team_x.write_text(TEAM_X.format(interval="10s"))
    am, rw = CaptureServer(200), CaptureServer(204)
    srv = _server(tmp_path, f"""\
ruler:
  alertmanager_url: {am.url}
  external_url: http://sluiceway.example:3100
  evaluation_interval: 10s
  poll_interval: 200ms
  remote_write:
    enabled: true
    client:
      url: {rw.url}/api/v1/write
      queue_config: {{batch_send_deadline: 200ms}}
ruler_storage:
  backend: local
  local:
    directory: {rules}
""")
    try:
        for name in RULER_FILE_ORDER:  # the recorded file, as Loki listed it
            replay(srv, name, rules)
        # The same group evaluated every second, so this test does not take minutes; as a
        # new group (removed first) whose first evaluation finds the lines, so that it is
        # the first for the ruler too (no ALERTS before `for` state is restored), as the
        # recorded one was.
        team_x.unlink()
        wait_until(lambda: _group_interval(srv) is None, "the ruler to drop the group")
        # Two error lines at one time, 45 s ago: in the rule's 1m window for ~15 s.
        pushes = json.loads((RESP / "ruler_x_pushes.json").read_text())
        ts = time.time_ns() - 45 * 10**9
        body = {"streams": [{"stream": pushes["xPushStream"],
                             "values": [[str(ts), line] for line in pushes["xPushLines"]]}]}
        r = httpx.post(f"{srv.url}/loki/api/v1/push", content=orjson.dumps(body),
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 204
        team_x.write_text(TEAM_X.format(interval="1s"))
        wait_until(lambda: any(b"ALERTS" in _raw(c.body) for c in rw.on("/api/v1/write")),
                   "ALERTS to be remote-written", proc_logs=srv.log)
        firing = {n: replay(srv, n, adjust=_interval_10) for n in RULER_FIRING}
        wait_until(lambda: len(am.on("/api/v2/alerts")) >= 2, "the resolved notification",
                   proc_logs=srv.log)
        for n in RULER_RESOLVED:
            replay(srv, n, adjust=_interval_10)
        _check_alertmanager_posts(am, firing["prometheus_alerts"])
        _check_remote_writes(rw, firing["prometheus_alerts"])
    finally:
        srv.stop()
        am.close()
        rw.close()


def _group_interval(srv: ServerProcess) -> float | None:
    groups = httpx.get(f"{srv.url}/prometheus/api/v1/rules").json()["data"]["groups"]
    return groups[0]["interval"] if groups else None


def _raw(body: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(body))


def _ns(rfc3339: str) -> int:
    base, _, frac = rfc3339.removesuffix("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int(frac.ljust(9, "0"))


def _ms(rfc3339: str) -> int:
    return _ns(rfc3339) // 10**6


def _check_alertmanager_posts(am: CaptureServer, alerts: dict[str, Any]) -> None:
    posts = am.on("/api/v2/alerts")
    for i, ours in enumerate(posts[:2], 1):
        loki_req = json.loads((RESP / f"ruler_alertmanager_post-{i}.json").read_text())
        loki = json.loads((RESP / f"ruler_alertmanager_post-{i}.body").read_bytes())
        assert ours.method == loki_req["method"] == "POST"
        for h in ("Content-Type", "X-Scope-Orgid"):
            assert ours.headers[h.lower()] == loki_req["headers"][h], h
        body = json.loads(ours.body)
        assert [sorted(a) for a in body] == [sorted(a) for a in loki]
        [a], [la] = body, loki
        assert (a["labels"], a["annotations"]) == (la["labels"], la["annotations"])
        # The link goes to this server's Explore page (Loki's points at Grafana's).
        url = "http://sluiceway.example:3100/#/explore?query="
        assert a["generatorURL"].startswith(url)
        assert unquote(a["generatorURL"][len(url):]) == (
            'sum(count_over_time({app="x"} |= "error" [1m])) > 0')
        starts, ends = _ms(a["startsAt"]), _ms(a["endsAt"])
        assert starts == _ms(alerts["data"]["alerts"][0]["activeAt"])
        if i == 1:  # firing: valid for 4 x max(resend_delay 1m, interval)
            assert ends - starts == _ms(la["endsAt"]) - _ms(la["startsAt"]) == 240_000
        else:  # resolved: ends at the evaluation that found no lines
            assert starts < ends <= ours.at_ns // 10**6
            assert (ends - starts) % 1000 == 0  # evaluations are whole intervals apart


def _check_remote_writes(rw: CaptureServer, alerts: dict[str, Any]) -> None:
    writes = rw.on("/api/v1/write")
    with_alerts = next(w for w in writes if b"ALERTS" in _raw(w.body))
    for ours_req, n in ((writes[0], 1), (with_alerts, 2)):
        ours = decode_write_request(ours_req.body)
        req = json.loads((RESP / f"ruler_remote_write-{n}.json").read_text())
        want = json.loads((RESP / f"ruler_remote_write-{n}.expected.json").read_text())
        assert ours_req.method == req["method"] and ours_req.path == req["path"]
        for h in ("Content-Encoding", "Content-Type", "X-Prometheus-Remote-Write-Version",
                  "X-Scope-Orgid"):
            assert ours_req.headers[h.lower()] == req["headers"][h], h
        assert [s.labels for s in ours] == [
            {lab["name"]: lab["value"] for lab in ts["labels"]} for ts in want["timeseries"]]
        assert all(len(s.samples) == 1 for s in ours)
        values = {s.labels["__name__"]: s.samples[0][1] for s in ours}
        assert values["app_x:error_lines:count1m"] == 2.0
        if n == 2:
            active_at = alerts["data"]["alerts"][0]["activeAt"]
            assert values["ALERTS"] == 1.0
            assert values["ALERTS_FOR_STATE"] == _ns(active_at) // 10**9
            assert len({s.samples[0][0] for s in ours}) == 1  # one evaluation's time
