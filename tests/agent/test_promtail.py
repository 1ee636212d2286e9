"""Promtail configs run by `sluiceway agent` against real servers: several clients (each its
own queue, tenant and external labels), relabeling, every supported pipeline stage, a
Promtail positions file, Promtail's flags and metric names, `convert`, `--dry-run`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sluiceway.durable import TMP_SUFFIX
from tests.agent.conftest import Stack
from tests.inproc import ThreadServer
from tests.procs import POLL, REPO, ServerProcess, free_port, sluiceway_cmd


class Promtail:
    """`sluiceway agent -config.file=promtail.yaml -config.expand-env=true`."""

    def __init__(self, tmp: Path, config: str, env: dict[str, str] | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.path = tmp / "promtail.yaml"
        self.path.write_text(config)
        self.port = int(yaml.safe_load(config)["server"]["http_listen_port"])
        self.log_path = tmp / "promtail-agent.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            sluiceway_cmd("agent", f"-config.file={self.path}", "-config.expand-env=true",
                          *extra),
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, **(env or {})})

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if POLL.get(f"http://127.0.0.1:{self.port}/ready", timeout=1).status_code \
                        == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/status",
                                        timeout=5).json()
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


BASE_S = int(time.time()) - 3600  # an hour ago: recent enough for the server to take


def stamp(offset_s: int = 0, frac: str = "") -> str:
    """RFC3339 of BASE_S + offset_s (with `frac`, e.g. ".5")."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(BASE_S + offset_s)) + frac + "Z"


def query(srv: ServerProcess, selector: str, tenant: str | None = None) -> list[
        tuple[dict[str, str], str, int]]:
    """(labels, line, ts) of every entry of `selector`, oldest first; labels as the agent
    sent them (without the server's own `detected_level`)."""
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", headers=headers, params={
        "query": selector, "start": str((BASE_S - 86400) * 10**9),
        "end": str(time.time_ns() + 10**12),
        "limit": "1000", "direction": "forward"}, timeout=30)
    assert r.status_code == 200, r.text
    out = [({k: v for k, v in s["stream"].items() if k != "detected_level"}, v[1], int(v[0]))
           for s in r.json()["data"]["result"] for v in s["values"]]
    return sorted(out, key=lambda e: e[2])


def wait_for(fn: Any, what: str, timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def two_servers(stack: Stack) -> tuple[ThreadServer, ThreadServer]:
    return stack.thread_server(), stack.thread_server("data-b")


CONFIG = """
server:
  http_listen_address: 127.0.0.1
  http_listen_port: {port}
  log_level: debug
  grpc_listen_port: 0
positions:
  filename: {tmp}/promtail/positions.yaml
  sync_period: 1s
  ignore_invalid_yaml: false
target_config:
  sync_period: 200ms
clients:
  - url: ${{FIRST_URL}}/loki/api/v1/push
    batchwait: 200ms
    batchsize: 102400
    timeout: 5s
    backoff_config: {{min_period: 100ms, max_period: 1s, max_retries: 5}}
    headers: {{X-Test: one}}
  - url: ${{SECOND_URL:-http://nowhere}}/loki/api/v1/push
    tenant_id: team-b
    external_labels: {{cluster: second, job: not-this}}
    batchwait: 200ms
scrape_configs:
  - job_name: json
    static_configs:
      - targets: [localhost]
        labels: {{job: app, env: prod, drop_me: x, __path__: {tmp}/logs/app.log}}
    relabel_configs:
      - {{source_labels: [env], regex: prod, action: keep}}
      - {{source_labels: [job, env], separator: '-', target_label: stack,
          replacement: 's-$1', regex: '(.*)'}}
      - {{action: labelmap, regex: 'drop_(.*)', replacement: 'copied_$1'}}
      - {{action: labeldrop, regex: drop_me}}
    pipeline_stages:
      - json:
          expressions: {{level: level, msg: msg, user: user.name, first: 'items[0]',
                        ts: time, count: 'length(items)'}}
      - labels: {{level: }}
      - structured_metadata: {{user: }}
      - timestamp: {{source: ts, format: RFC3339Nano, location: UTC,
                     fallback_formats: [UnixMs], action_on_failure: fudge}}
      - template: {{source: msg, template: '{{{{ ToUpper .Value }}}}-{{{{ .first }}}}'}}
      - static_labels: {{source: promtail}}
      - metrics: {{lines: {{type: Counter, config: {{action: inc}}}}}}
      - output: {{source: msg}}
  - job_name: cri
    static_configs:
      - labels: {{job: cri, __path__: '{tmp}/logs/cri*.log', __path_exclude__: '*skip*'}}
      - labels: {{job: dropped, __path__: {tmp}/logs/other.log}}
    relabel_configs:
      - {{source_labels: [job], regex: dropped, action: drop}}
    pipeline_stages:
      - cri: {{max_partial_lines: 10}}
      - regex: {{expression: 'user=(?P<user>\\w+)'}}
      - replace: {{expression: 'password=(\\S+)', replace: '****'}}
      - replace: {{expression: 'user=(?P<who>\\w+)', replace: '{{{{ .Value | ToUpper }}}}'}}
      - labelallow: [job, stream, who]
      - labels: {{who: }}
  - job_name: docker
    static_configs:
      - labels: {{job: docker, __path__: {tmp}/logs/docker.log}}
    pipeline_stages:
      - docker: {{}}
      - decolorize: {{}}
      - logfmt: {{mapping: {{lvl: level, msg: }}}}
      - labels: {{lvl: }}
      - labeldrop: [filename]
      - drop: {{source: lvl, value: debug, drop_counter_reason: noisy}}
      - drop: {{expression: '^health', longer_than: 1}}
      - sampling: {{rate: 1.0}}
      - limit: {{rate: 1000, burst: 1000, drop: false}}
  - job_name: multi
    static_configs:
      - labels: {{job: multi, __path__: {tmp}/logs/multi.log}}
    pipeline_stages:
      - multiline: {{firstline: '^\\d{{4}}-', max_wait_time: 500ms, max_lines: 50}}
      - regex: {{expression: '^(?P<day>\\S+) (?P<tenant>\\w+) (?P<kind>\\w+)'}}
      - labels: {{kind: }}
      - match:
          selector: '{{kind="audit"}}'
          stages:
            - tenant: {{source: tenant}}
            - pack: {{labels: [kind, day], ingest_timestamp: false}}
      - match:
          selector: '{{job="multi"}} |= "secret"'
          action: drop
          drop_counter_reason: secrets
      - match: {{selector: '{{kind="plain"}}', stages: [{{tenant: {{value: fixed}}}}]}}
"""


def test_a_promtail_config_runs_with_every_stage_and_two_clients(
        tmp_path: Path, two_servers: tuple[ThreadServer, ThreadServer]) -> None:
    first, second = two_servers
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "promtail").mkdir()
    app_lines = [json.dumps({"level": "info", "msg": f"old {i}", "user": {"name": "ann"},
                             "items": ["a"], "time": stamp(-60)})
                 for i in range(2)]
    app_lines += [json.dumps({"level": lvl, "msg": f"hello {i}", "user": {"name": "bob"},
                              "items": [f"x{i}", "y"],
                              "time": stamp(i, ".5")})
                  for i, lvl in enumerate(["info", "warn", "info"])]
    _write(logs / "app.log", app_lines)
    # Promtail had read the first two lines: a migration goes on after them.
    offset = sum(len(line) + 1 for line in app_lines[:2])
    (tmp_path / "promtail" / "positions.yaml").write_text(
        f"positions:\n  {logs / 'app.log'}: \"{offset}\"\n")
    _write(logs / "cri.log", [
        f"{stamp(5, '.000000001')} stdout P part one user=carl ",
        f"{stamp(5, '.000000002')} stdout F part two password=hunter2",
        f"{stamp(6)} stderr F user=dora says hi"])
    _write(logs / "cri-skip.log", [f"{stamp(5)} stdout F excluded"])
    _write(logs / "other.log", ["dropped by relabeling"])
    _write(logs / "docker.log", [json.dumps({"log": f"{text}\n", "stream": "stdout",
                                             "time": stamp(5)})
                                 for text in ("level=info msg=\"\x1b[31mred\x1b[0m alert\"",
                                              "level=debug msg=chatty",
                                              "health check ok",
                                              "level=warn msg=careful")])
    _write(logs / "multi.log", [
        "2026-01-02 acme audit login by x",
        "  continued detail",
        "2026-01-02 acme plain hello there",
        "2026-01-02 acme info a secret here",
        "2026-01-02 acme info fine"])
    port = free_port()
    agent = Promtail(tmp_path, CONFIG.format(port=port, tmp=tmp_path),
                     env={"FIRST_URL": first.url, "SECOND_URL": second.url})
    try:
        agent.wait_ready()
        # json job: positions honoured, relabeled labels, stages applied
        got = wait_for(lambda: query(first, '{job="app"}') if len(
            query(first, '{job="app"}')) >= 3 else None, "the json job's lines")
        assert [line for _, line, _ in got] == ["HELLO 0-x0", "HELLO 1-x1", "HELLO 2-x2"]
        labels = got[1][0]
        assert labels["level"] == "warn" and labels["stack"] == "s-app-prod"
        assert labels["copied_me"] == "x" and "drop_me" not in labels
        assert labels["source"] == "promtail" and labels["filename"].endswith("app.log")
        assert got[0][2] == BASE_S * 10**9 + 500_000_000  # the line's own time
        meta = httpx.get(f"{first.url}/loki/api/v1/query_range", params={
            "query": '{job="app"} | user="bob"', "start": str((BASE_S - 86400) * 10**9),
            "end": str(time.time_ns())}).json()["data"]["result"]
        assert sum(len(s["values"]) for s in meta) == 3, "structured metadata user"
        # cri job: partials joined, masked, upper-cased group, labelallow, no excluded file
        cri = wait_for(lambda: query(first, '{job="cri"}') if len(
            query(first, '{job="cri"}')) >= 2 else None, "the cri job's lines")
        assert [line for _, line, _ in cri] == [
            "part one user=CARL part two password=****", "user=DORA says hi"]
        assert cri[0][0] == {"job": "cri", "stream": "stdout", "who": "CARL"}
        assert cri[1][0]["stream"] == "stderr"
        assert query(first, '{job="dropped"}') == []
        # docker job: unwrapped, decolorized, logfmt label, drops counted
        dock = wait_for(lambda: query(first, '{job="docker"}') if len(
            query(first, '{job="docker"}')) >= 2 else None, "the docker job's lines")
        assert [line for _, line, _ in dock] == ['level=info msg="red alert"',
                                                 "level=warn msg=careful"]
        assert dock[0][0] == {"job": "docker", "stream": "stdout", "lvl": "info"}
        # multi job: joined, routed by tenant, packed, secret dropped
        audit = wait_for(lambda: query(first, '{job="multi"}', tenant="acme"),
                         "the audit line in tenant acme")
        packed = json.loads(audit[0][1])
        assert packed == {"kind": "audit", "day": "2026-01-02",
                          "_entry": "2026-01-02 acme audit login by x\n  continued detail"}
        assert "kind" not in audit[0][0]
        assert [line for _, line, _ in wait_for(
            lambda: query(first, '{job="multi"}', tenant="fixed"), "tenant fixed")] == [
            "2026-01-02 acme plain hello there"]
        rest = wait_for(lambda: query(first, '{job="multi"}'), "the default tenant")
        assert [line for _, line, _ in rest] == ["2026-01-02 acme info fine"]
        # the second client: its tenant, its external labels (a stream's own label wins)
        other = wait_for(lambda: query(second, '{job="app"}', tenant="team-b") if len(
            query(second, '{job="app"}', tenant="team-b")) >= 3 else None,
            "the second client's lines")
        assert {e[0]["cluster"] for e in other} == {"second"}
        assert all(e[0]["job"] == "app" for e in other)
        assert query(second, '{job="multi"}', tenant="acme"), "tenant stage on client 2"
        # Promtail's metric names
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        host1 = first.url.removeprefix("http://")
        host2 = second.url.removeprefix("http://")
        assert f'promtail_sent_entries_total{{host="{host1}"}}' in metrics
        assert f'promtail_sent_entries_total{{host="{host2}"}}' in metrics
        assert f'promtail_request_duration_seconds_count{{host="{host1}",status_code="204"}}' \
            in metrics
        # the agent's own queue metrics, one series per lane
        for url, tenant in ((first.url, ""), (second.url, "team-b"), (first.url, "acme")):
            assert re.search(rf'^sluiceway_agent_lines_shipped_total\{{client="{url}",'
                             rf'tenant="{tenant}"\}} [1-9]', metrics, re.M), (url, tenant)
        assert f'promtail_read_bytes_total{{path="{logs / "app.log"}"}}' in metrics
        assert f'promtail_file_bytes_total{{path="{logs / "app.log"}"}}' in metrics
        assert "promtail_dropped_entries_total" in metrics
        st = agent.status()
        assert st["filtered_by_reason"].get("noisy") == 1
        assert st["filtered_by_reason"].get("secrets") == 1
        assert st["filtered_by_reason"].get("drop_stage") == 1
    finally:
        agent.stop()
    text = agent.log()
    assert "Traceback" not in text, text
    # one message names what is left out; one says which Promtail meanings are kept
    assert text.count("not supported here, left out") == 1 and "pipeline stage metrics" in text
    assert text.count("keeping Promtail's meaning") == 1 and "max_retries: 5" in text


def test_convert_marks_the_differences(tmp_path: Path) -> None:
    cfg = CONFIG.format(port=9999, tmp=tmp_path)
    path = tmp_path / "promtail.yaml"
    path.write_text(cfg)
    r = subprocess.run(sluiceway_cmd("agent", "convert", str(path)), cwd=REPO,
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FIRST_URL": "http://a:1"})
    assert r.returncode == 0, r.stderr
    native = yaml.safe_load(r.stdout)
    assert [c["url"] for c in native["clients"]] == [
        "${FIRST_URL}/loki/api/v1/push", "${SECOND_URL:-http://nowhere}/loki/api/v1/push"]
    assert native["clients"][0]["retry"]["max_retries"] == 4
    assert native["listen"] == "127.0.0.1:9999"
    assert native["inputs"][0]["paths"] == [f"{tmp_path}/logs/app.log"]
    assert "# promtail: backoff_config.max_retries: 5" in r.stdout
    assert "# not supported, skipped: pipeline stage metrics" in r.stdout
    # the printed config is a valid agent config
    out = tmp_path / "native.yaml"
    out.write_text(r.stdout)
    check = subprocess.run(sluiceway_cmd("agent", "-c", str(out), "--check-syntax"),
                           cwd=REPO, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "FIRST_URL": "http://a:1"})
    assert check.returncode == 0, check.stderr


def test_max_retries_gives_up_as_promtail_does_though_the_queue_spills(
        tmp_path: Path) -> None:
    """`backoff_config.max_retries: 3`: after 3 attempts the batch is dropped and counted,
    as in Promtail, although the agent's queue spills by default (its first failure
    still put it on disk)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    _write(logs / "a.log", [f"line {i}" for i in range(3)])
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    cfg = f"""
server: {{http_listen_port: {port}, http_listen_address: 127.0.0.1}}
positions: {{filename: {tmp_path}/pos.yaml}}
clients:
  - url: 'http://127.0.0.1:{dead}/loki/api/v1/push'
    batchwait: 50ms
    backoff_config: {{min_period: 10ms, max_period: 50ms, max_retries: 3}}
scrape_configs:
  - job_name: a
    static_configs: [{{labels: {{job: a, __path__: {logs}/a.log}}}}]
"""
    agent = Promtail(tmp_path, cfg)
    try:
        agent.wait_ready()
        wait_for(lambda: agent.status()["lost_by_reason"].get("retries_exhausted") == 3,
                 "the batch given up")
        st = agent.status()
        assert st["queue"]["when_full"] == "spill" and st["lines"]["spilled"] >= 3, st
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert (f'promtail_dropped_entries_total{{host="127.0.0.1:{dead}",'
                'reason="ingester_error",tenant=""} 3.0') in metrics
        assert 'sluiceway_agent_lines_lost_total{reason="retries_exhausted"} 3.0' in metrics
    finally:
        agent.stop()
    assert "gave up on 3 lines after 3 attempts (retries_exhausted)" in agent.log()


def test_dry_run_prints_entries_and_inspect_shows_each_stage(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    _write(logs / "a.log", ['{"level":"warn","msg":"hi"}'])
    port = free_port()
    cfg = f"""
server: {{http_listen_port: {port}, http_listen_address: 127.0.0.1}}
positions: {{filename: {tmp_path}/pos.yaml}}
clients: [{{url: 'http://127.0.0.1:9/loki/api/v1/push'}}]
scrape_configs:
  - job_name: a
    static_configs: [{{labels: {{job: a, __path__: {logs}/a.log}}}}]
    pipeline_stages:
      - json: {{expressions: {{level: level, msg: msg}}}}
      - labels: {{level: }}
      - output: {{source: msg}}
"""
    agent = Promtail(tmp_path, cfg, extra=("-dry-run", "-inspect"))
    out_path = agent.log_path
    try:
        agent.wait_ready()
        wait_for(lambda: "\thi" in out_path.read_text(), "the printed entry")
    finally:
        agent.stop()
    text = out_path.read_text()
    assert '{filename="' in text and 'job="a", level="warn"}\thi' in text
    assert "[inspect: json stage] entry 0: extracted +level='warn' +msg='hi'" in text
    assert "[inspect: labels stage] entry 0: labels +level='warn'" in text
    assert not (tmp_path / "sluiceway-agent" / "positions.json").exists(), \
        "a dry run saves no position"


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns,
                                       p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))} if root.exists() else {}


@pytest.mark.parametrize("earlier", [False, True], ids=["no-data-dir", "earlier-run"])
def test_dry_run_leaves_the_data_dir_untouched(tmp_path: Path, earlier: bool) -> None:
    """A dry run only reads: no data dir made, no lane directory, no spill, no positions
    written (as Promtail's `-dry-run` writes no positions file), even with two clients
    and a queue that spills; what an earlier run left (a spill dir, a positions temp
    file a crash left) stays as it was."""
    logs = tmp_path / "logs"
    logs.mkdir()
    _write(logs / "a.log", ["dry one", "dry two"])
    data = tmp_path / "agent-data"
    if earlier:
        (data / "spill").mkdir(parents=True)
        (data / ("positions.json" + TMP_SUFFIX)).write_bytes(b"cut short")
    before = _tree(data)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{free_port()}", "data_dir": str(data),
        "clients": [{"url": "http://127.0.0.1:9"}, {"url": "http://127.0.0.1:10"}],
        "queue": {"when_full": "spill"},
        "inputs": [{"type": "file", "paths": [str(logs / "*.log")],
                    "start_at": "beginning", "labels": {"job": "dry"}}]}))
    out = tmp_path / "dry.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen(sluiceway_cmd("agent", "-c", str(cfg), "--dry-run"),
                                stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for(lambda: "\tdry two" in out.read_text() or proc.poll() is not None,
                 "the printed entries")
        assert proc.poll() is None, out.read_text()
        proc.terminate()
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = out.read_text()
    assert '{filename="' in text and '\tdry one' in text, text
    assert data.exists() == earlier
    assert _tree(data) == before


def test_syslog_and_push_api_with_relabeling(tmp_path: Path, stack: Stack) -> None:
    srv = stack.thread_server()
    port, syslog_port, push_port = free_port(), free_port(), free_port()
    cfg = f"""
server: {{http_listen_port: {port}, http_listen_address: 127.0.0.1}}
positions: {{filename: {tmp_path}/pos.yaml}}
clients: [{{url: '{srv.url}/loki/api/v1/push', batchwait: 100ms}}]
scrape_configs:
  - job_name: syslog
    syslog:
      listen_address: 127.0.0.1:{syslog_port}
      listen_protocol: tcp
      idle_timeout: 60s
      label_structured_data: true
      labels: {{job: syslog}}
      use_incoming_timestamp: true
      max_message_length: 8192
      use_rfc5424_message: false
    relabel_configs:
      - {{source_labels: [__syslog_message_app_name], target_label: app}}
      - {{source_labels: [__syslog_message_sd_origin_ip], target_label: origin}}
      - {{source_labels: [__syslog_message_severity], regex: debug, action: drop}}
  - job_name: push
    loki_push_api:
      server: {{http_listen_address: 127.0.0.1, http_listen_port: {push_port}}}
      labels: {{pushed: "yes"}}
      use_incoming_timestamp: true
    relabel_configs:
      - {{source_labels: [secret], regex: ".+", action: drop}}
"""
    agent = Promtail(tmp_path, cfg)
    try:
        agent.wait_ready()
        import socket

        msg = (f'<14>1 {stamp(5)} host1 myapp 42 ID1 [origin ip="10.0.0.1"] '
               'hello syslog')
        dbg = f"<15>1 {stamp(5)} host1 myapp 42 ID1 - chatter"
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", syslog_port), timeout=5) as s:
                    s.sendall("".join(f"{len(m)} {m}" for m in (msg, dbg)).encode())
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        got = wait_for(lambda: query(srv, '{job="syslog"}'), "the syslog line")
        assert [(e[0], e[1]) for e in got] == [
            ({"job": "syslog", "app": "myapp", "origin": "10.0.0.1"}, "hello syslog")]
        assert got[0][2] == (BASE_S + 5) * 10**9
        t = str((BASE_S + 5) * 10**9)
        body = {"streams": [{"stream": {"app": "web"}, "values": [[t, "pushed line"]]},
                            {"stream": {"app": "web", "secret": "1"},
                             "values": [[t, "never"]]}]}
        r = httpx.post(f"http://127.0.0.1:{push_port}/loki/api/v1/push", json=body)
        assert r.status_code == 204, r.text
        r = httpx.post(f"http://127.0.0.1:{push_port}/promtail/api/v1/raw",
                       content=b"raw one\nraw two\n")
        assert r.status_code == 204
        pushed = wait_for(lambda: query(srv, '{pushed="yes"}') if len(
            query(srv, '{pushed="yes"}')) >= 3 else None, "the pushed lines")
        lines = sorted(e[1] for e in pushed)
        assert lines == ["pushed line", "raw one", "raw two"]
        assert any(e[0] == {"pushed": "yes", "app": "web"} and e[2] == (BASE_S + 5) * 10**9
                   for e in pushed)
    finally:
        agent.stop()
    assert "Traceback" not in agent.log()


def test_file_sd_and_kubernetes_pods(tmp_path: Path, stack: Stack) -> None:
    srv = stack.thread_server()
    port = free_port()
    pods = tmp_path / "pods"
    cdir = pods / "shop_web-7d9_0a1b2c" / "nginx"
    cdir.mkdir(parents=True)
    _write(cdir / "0.log", [f"{stamp(5, '.000000001')} stdout F from the pod"])
    other = pods / "kube-system_dns_9z" / "coredns"
    other.mkdir(parents=True)
    _write(other / "0.log", [f"{stamp(5)} stdout F not this namespace"])
    sd_log = tmp_path / "sd.log"
    _write(sd_log, ["from file sd"])
    (tmp_path / "targets.json").write_text(json.dumps(
        [{"targets": ["localhost"], "labels": {"__path__": str(sd_log), "team": "ops"}}]))
    cfg = f"""
server: {{http_listen_port: {port}, http_listen_address: 127.0.0.1}}
positions: {{filename: {tmp_path}/pos.yaml}}
clients: [{{url: '{srv.url}/loki/api/v1/push', batchwait: 100ms}}]
scrape_configs:
  - job_name: sd
    file_sd_configs: [{{files: ['{tmp_path}/targets*.json'], refresh_interval: 1s}}]
    relabel_configs:
      - {{source_labels: [__meta_filepath], regex: '.*/(.*)', target_label: from}}
  - job_name: kubernetes-pods
    kubernetes_sd_configs: [{{role: pod, namespaces: {{names: [shop]}}}}]
    relabel_configs:
      - {{source_labels: [__meta_kubernetes_namespace], target_label: namespace}}
      - {{source_labels: [__meta_kubernetes_pod_name], target_label: pod}}
      - {{source_labels: [__meta_kubernetes_pod_container_name], target_label: container}}
      - {{source_labels: [__meta_kubernetes_pod_label_app], target_label: app}}
      - source_labels: [__meta_kubernetes_pod_uid, __meta_kubernetes_pod_container_name]
        separator: /
        target_label: __path__
        replacement: {pods}/*$1/*.log
    pipeline_stages: [{{cri: {{}}}}]
"""
    agent = Promtail(tmp_path, cfg, env={"SLUICEWAY_KUBERNETES_PODS_ROOT": str(pods)})
    try:
        agent.wait_ready()
        sd = wait_for(lambda: query(srv, '{team="ops"}'), "the file_sd line")
        assert sd[0][0] == {"team": "ops", "from": "targets.json", "filename": str(sd_log)}
        pod = wait_for(lambda: query(srv, '{namespace=~".+"}'), "the pod's line")
        assert [(e[0]["pod"], e[0]["container"], e[1]) for e in pod] == [
            ("web-7d9", "nginx", "from the pod")]
        assert pod[0][0]["namespace"] == "shop" and "app" not in pod[0][0]
    finally:
        agent.stop()
    text = agent.log()
    assert "__meta_kubernetes_pod_label_app (not in the pods' log directory" in text
