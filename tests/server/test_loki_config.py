"""A Loki config file works: a full single-binary config (the shape of Loki's own local
config, written here) starts a real server, warns once about what has no effect, and its
limits apply; Loki's names map onto ours; an unknown key is one clear line with the
closest known key, in the server's config and the agent's alike."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from sluiceway.agent import ConfigError as AgentConfigError
from sluiceway.agent import load_config as load_agent_config
from sluiceway.server import ConfigError, load_config
from sluiceway.server._overrides import TenantLimits
from tests.procs import REPO, ServerProcess, free_port

FULL = """\
auth_enabled: true

server:
  http_listen_address: 127.0.0.1
  http_listen_port: {port}
  grpc_listen_port: 9096
  log_level: warn
  grpc_server_max_concurrent_streams: 1000

common:
  instance_addr: 127.0.0.1
  path_prefix: /tmp/loki-never-used
  storage:
    filesystem:
      chunks_directory: /tmp/loki-never-used/chunks
      rules_directory: /tmp/loki-never-used/rules
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory

ingester:
  max_chunk_age: 1h
  chunk_idle_period: 15m
  wal:
    enabled: true
    dir: /tmp/loki-never-used/wal

query_range:
  results_cache:
    cache:
      embedded_cache:
        enabled: true
        max_size_mb: 100

limits_config:
  max_label_names_per_series: 3
  max_query_length: 48h
  max_query_lookback: 30d
  per_stream_rate_limit: 5MB
  per_stream_rate_limit_burst: 20MB
  retention_period: 744h
  metric_aggregation_enabled: true
  allow_structured_metadata: true
  volume_enabled: true

schema_config:
  configs:
    - from: 2024-04-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h

compactor:
  working_directory: /tmp/loki-never-used/compactor
  compaction_interval: 5m
  retention_enabled: true
  retention_delete_delay: 1h
  delete_request_store: filesystem
  delete_request_cancel_period: 12h

runtime_config:
  period: 30s

pattern_ingester:
  enabled: true
  retain_for: 1h
  metric_aggregation:
    loki_address: localhost:3100

ruler:
  alertmanager_url: http://localhost:9093

frontend:
  encoding: protobuf

querier:
  max_concurrent: 4
  multi_tenant_queries_enabled: true

memberlist:
  join_members: []

analytics:
  reporting_enabled: false
"""


def _write(tmp_path: Path, text: str, name: str = "loki.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_full_loki_config_maps_onto_ours(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL.format(port=3199)))
    assert cfg.server.listen == "127.0.0.1:3199"
    assert cfg.server.auth_enabled and cfg.server.log_level == "warning"
    assert cfg.querier.multi_tenant_queries_enabled
    assert (cfg.storage.max_chunk_age, cfg.storage.chunk_idle_period) == (3600, 900)
    lim = cfg.limits
    assert (lim.max_label_names_per_series, lim.max_query_length) == (3, 48 * 3600)
    assert lim.max_query_lookback == 30 * 86400
    assert (lim.per_stream_rate_limit, lim.per_stream_rate_limit_burst) == (5 << 20, 20 << 20)
    c = cfg.compactor  # Loki's compactor intervals win over the storage keys
    assert c.compaction_every(cfg.storage) == 300 and c.retention_every(cfg.storage) == 300
    # retention_enabled: Loki's retention_period
    assert cfg.retention_period(cfg.limits) == 744 * 3600
    assert (c.working_directory, c.retention_delete_delay) == (
        Path("/tmp/loki-never-used/compactor"), 3600)
    assert (c.delete_request_store, c.delete_request_cancel_period) == ("filesystem", 43200)
    assert set(cfg.loki_ignored) >= {
        "common", "schema_config", "query_range", "pattern_ingester.metric_aggregation",
        "frontend",
        "memberlist", "analytics", "server.grpc_listen_port", "ingester.wal",
        "limits_config.metric_aggregation_enabled", "querier.max_concurrent"}
    assert cfg.pattern_ingester.enabled and cfg.pattern_ingester.retain_for == 3600
    assert not any("max_label_names" in k or "http_listen" in k or "max_chunk_age" in k
                   for k in cfg.loki_ignored)


def test_retention_needs_retention_enabled_as_in_loki(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "limits_config:\n  retention_period: 30d\n"))
    assert cfg.retention_period(cfg.limits) == 0
    assert any("retention_period" in k for k in cfg.loki_ignored)


@pytest.mark.parametrize(("text", "message"), [
    ("limits_config:\n  max_line_sise: 1KB\n",
     "unknown key 'limits_config.max_line_sise' (did you mean 'max_line_size'?)"),
    ("limit_config:\n  max_line_size: 1KB\n",
     "unknown key 'limit_config' (did you mean 'limits_config'?)"),
    ("storage:\n  retention_perod: 1d\n",
     "unknown key 'storage.retention_perod' (did you mean 'retention_period'?)"),
    ("compactor:\n  retention_enable: true\n",
     "unknown key 'compactor.retention_enable' (did you mean 'retention_enabled'?)"),
    ("limits: {}\nlimits_config: {}\n", "both 'limits' and 'limits_config' are set"),
    ("server:\n  listen: 127.0.0.1:1\n  http_listen_port: 2\n", "use one"),
    ("target: querier\n", "target: 'querier' is not supported"),
])
def test_bad_keys_are_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    text = str(exc.value)
    assert text.startswith(f"invalid configuration in {tmp_path / 'loki.yaml'}: ")
    assert message in text and "\n" not in text


def test_server_and_agent_say_unknown_keys_the_same_way(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as server_exc:
        load_config(_write(tmp_path, "storage:\n  data_dirr: x\n"))
    with pytest.raises(AgentConfigError) as agent_exc:
        load_agent_config(text="url: http://x\nqueue: {capacty: 5}\ninputs: [{type: stdin}]")
    assert str(server_exc.value).endswith(
        "unknown key 'storage.data_dirr' (did you mean 'data_dir'?)")
    assert str(agent_exc.value) == ("invalid agent config: unknown key 'queue.capacty' "
                                    "(did you mean 'capacity'?)")


def test_unknown_key_is_exit_2_and_one_line(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "limits_config:\n  max_global_stream_per_user: 5\n")
    r = subprocess.run([sys.executable, "-m", "sluiceway", "server", "-c", str(cfg),
                        "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"sluiceway: invalid configuration in {cfg}: unknown key "
        "'limits_config.max_global_stream_per_user' (did you mean "
        "'max_global_streams_per_user'?)"]


class _LokiConfigServer(ServerProcess):
    """Started with the config alone: the port comes from `server.http_listen_port`."""

    def start(self, wait: float = 30.0) -> ServerProcess:
        assert self.config is not None
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child's for its lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluiceway", "server", "-c", str(self.config),
             "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=self._preexec)
        self.wait_ready(wait)
        return self


def test_a_full_loki_config_starts_warns_once_and_applies_its_limits(tmp_path: Path) -> None:
    port = free_port()
    srv = _LokiConfigServer(tmp_path / "data", _write(tmp_path, FULL.format(port=port)),
                            port=port).start()
    try:
        push = f"{srv.url}/loki/api/v1/push"

        def body(labels: dict[str, str]) -> bytes:
            return orjson.dumps({"streams": [{"stream": labels, "values": [
                [str(time.time_ns()), "x"]]}]})

        hdr = {"Content-Type": "application/json"}
        # auth_enabled: true (top level, as Loki has it)
        assert httpx.post(push, content=body({"a": "1"}), headers=hdr).status_code == 401
        hdr["X-Scope-OrgID"] = "team"
        four = body({"a": "1", "b": "2", "c": "3", "d": "4"})
        r = httpx.post(push, content=four, headers=hdr)
        assert r.status_code == 400  # limits_config.max_label_names_per_series: 3
        assert r.text.strip() == ("entry for stream '{a=\"1\", b=\"2\", c=\"3\", d=\"4\"}' "
                                  "has 4 label names; limit 3")
        r = httpx.get(f"{srv.url}/loki/api/v1/query_range", headers=hdr, params={
            "query": '{a="1"}', "start": "2026-01-01T00:00:00Z", "end": "2026-01-04T00:00:00Z"})
        assert r.status_code == 200  # wholly before max_query_lookback: an empty answer
        assert r.json()["data"]["result"] == []
    finally:
        srv.stop()
    warnings = [ln for ln in srv.log().splitlines() if "have no effect here" in ln]
    assert len(warnings) == 1, srv.log()
    assert "WARNING" in warnings[0] and "schema_config" in warnings[0]


def _readme_yaml_after(marker: str) -> str:
    text = (REPO / "docs" / "readme" / "server.md").read_text()
    block = text[text.index(marker):].split("```yaml\n", 1)[1]
    return block.split("```", 1)[0]


def test_the_readme_examples_load(tmp_path: Path) -> None:
    overrides = _write(tmp_path, _readme_yaml_after("**Per-tenant overrides.**"), "rt.yaml")
    loki = _readme_yaml_after("A Loki config that works here as it is:").replace(
        "/etc/sluiceway/overrides.yaml", str(overrides))
    cfg = load_config(_write(tmp_path, loki))
    assert cfg.limits.per_stream_rate_limit == 3 << 20 and cfg.runtime_config.files
    tl = TenantLimits(cfg.limits, cfg.runtime_config)
    tl.load()
    assert tl.get("team-a").max_global_streams_per_user == 20000
    assert tl.get("team-b").retention_period == 14 * 86400
    assert cfg.retention_period(tl.get("team-b")) == 14 * 86400
