"""One config model per component: the server's `storage:` and `compactor:` sections are
the store's own models (`sluiceway.store.StoreConfig`, `CompactorConfig`), `ruler:` and
`ruler_storage:` the ruler's, `pattern_ingester:` the pattern miner's, `cluster:` the
cluster's (`sluiceway.cluster.ClusterConfig`), embedded as they are and handed to the
component as the same objects, never copied field by field into another model. Every
field of the store's and the cluster's models is a YAML key of the same name (and an
environment variable, and a dotted override), in the YAML's units."""

from __future__ import annotations

import ast
import logging
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluiceway.cluster import ClusterConfig
from sluiceway.patterns import PatternIngesterConfig
from sluiceway.ruler import RemoteWriteClient, RulerConfig, RulerStorageConfig
from sluiceway.server import Config, ConfigError, load_config
from sluiceway.server._app import create_app, open_store, pattern_service
from sluiceway.store import CompactorConfig, NatsConfig, S3Config, StoreConfig
from tests.sourcescan import parse_source

REPO = Path(__file__).resolve().parents[2]

# Each field of StoreConfig: a value as a user writes it, and what the store then reads.
# A field added to the store's model without a row here fails the test below: each one
# must be reachable from the config file under its own name.
STORAGE: dict[str, tuple[Any, Any]] = {
    "data_dir": ("/srv/logs", Path("/srv/logs")),
    "backend": ("nats", "nats"),
    "s3": ({"bucketnames": "logs", "endpoint": "minio:9000"},
           S3Config(bucketnames="logs", endpoint="minio:9000")),
    "nats": ({"url": "nats://n1:4222", "cache_size": "8MiB"},
             NatsConfig(url="nats://n1:4222", cache_size=8 << 20)),
    "wal_sync": ("interval", "interval"),
    "wal_sync_interval": ("250ms", 0.25),
    "wal_segment_size": ("64MiB", 64 << 20),
    "max_wal_size": ("1GiB", 1 << 30),
    "chunk_target_size": ("1MB", 1_000_000),
    "max_chunk_age": ("1h", 3600.0),
    "chunk_idle_period": ("5m", 300.0),
    "compression_level": (3, 3),
    "flush_check_period": ("2s", 2.0),
    "retention_period": ("30d", 30 * 86400.0),
    "retention_check_interval": ("1m", 60.0),
    "cache_size": ("32MiB", 32 << 20),
    "max_heads_size": ("256MiB", 256 << 20),
    "flush_on_shutdown": (False, False),
    "recover_chunks": (True, True),
    "compaction_enabled": (False, False),
    "compaction_level": (9, 9),
    "compaction_target_size": ("8MiB", 8 << 20),
    "compaction_min_age": ("30m", 1800.0),
    "compaction_interval": ("20m", 1200.0),
    "index_sync_period": ("45s", 45.0),
    "index_relist_after_write": ("500ms", 0.5),
}
COMPACTOR: dict[str, tuple[Any, Any]] = {
    "working_directory": ("/srv/compactor", Path("/srv/compactor")),
    "compaction_interval": ("5m", 300.0),
    "apply_retention_interval": ("1h", 3600.0),
    "retention_enabled": (True, True),
    "retention_delete_delay": ("3h", 3 * 3600.0),
    "delete_request_store": ("filesystem", "filesystem"),
    "delete_request_cancel_period": ("12h", 12 * 3600.0),
    "delete_max_interval": ("1d", 86400.0),
    "deletion_mode": ("filter-only", "filter-only"),
    "max_compaction_parallelism": (4, 4),
}
CLUSTER: dict[str, tuple[Any, Any]] = {
    "urls": ("nats://n1:4222,nats://n2:4222", ["nats://n1:4222", "nats://n2:4222"]),
    "role": ("ingester", "ingester"),
    "name_prefix": ("logs-", "logs-"),
    "partitions": (32, 32),
    "partitions_per_stream": (8, 8),
    "replicas": (1, 1),
    "lease_ttl": ("20s", 20.0),
    "flush_cap": ("16MiB", 16 << 20),
    "max_payload": ("8MiB", 8 << 20),
    "purge_delay": ("2m", 120.0),
    "timeout": ("1500ms", 1.5),
    "creds_file": ("/etc/nats/app.creds", "/etc/nats/app.creds"),
    "nkey_seed_file": ("/etc/nats/seed.nk", "/etc/nats/seed.nk"),
    "user": ("app", "app"),
    "password": ("s3cret", "s3cret"),
    "token": ("t0ken", "t0ken"),
    "tls_ca_file": ("/etc/nats/ca.pem", "/etc/nats/ca.pem"),
    "tls_cert_file": ("/etc/nats/cert.pem", "/etc/nats/cert.pem"),
    "tls_key_file": ("/etc/nats/key.pem", "/etc/nats/key.pem"),
}
SECTIONS = {"storage": (StoreConfig, STORAGE), "compactor": (CompactorConfig, COMPACTOR),
            "cluster": (ClusterConfig, CLUSTER)}


def test_the_server_config_embeds_the_stores_models() -> None:
    assert Config.model_fields["storage"].annotation is StoreConfig
    assert Config.model_fields["compactor"].annotation is CompactorConfig
    assert StoreConfig.model_fields["s3"].annotation == S3Config | None
    assert StoreConfig.model_fields["nats"].annotation == NatsConfig | None
    assert Config.model_fields["ruler"].annotation is RulerConfig
    assert Config.model_fields["ruler_storage"].annotation is RulerStorageConfig
    assert Config.model_fields["pattern_ingester"].annotation is PatternIngesterConfig
    assert Config.model_fields["cluster"].annotation is ClusterConfig


def test_the_cluster_section_keeps_its_defaults_and_checks() -> None:
    cfg = load_config(None)
    assert cfg.cluster == ClusterConfig() and not cfg.cluster.enabled  # single-node
    assert (cfg.cluster.lease_ttl, cfg.cluster.timeout, cfg.cluster.flush_cap) == (
        10.0, 5.0, 64 << 20)
    for key, value, text in [
            ("urls", "http://n1:4222", "'http://n1:4222' is not a NATS URL"),
            ("name_prefix", "a.b", "may hold only letters, digits, '-' and '_'"),
            ("role", "writer", "cluster.role"), ("replicas", 6, "cluster.replicas"),
            ("lease_ttl", "0s", "cluster.lease_ttl")]:
        with pytest.raises(ConfigError, match=re.escape(text)):
            load_config(None, {f"cluster.{key}": value})


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_field_of_the_stores_models_has_a_row_here(section: str) -> None:
    model, rows = SECTIONS[section]
    assert set(rows) == set(model.model_fields), (
        "a field of the store's model without a YAML row here, or a row without a field")


@pytest.mark.parametrize(("section", "key"), [(s, k) for s, (_m, rows) in SECTIONS.items()
                                              for k in rows])
def test_every_field_is_a_yaml_key_of_the_same_name(tmp_path: Path, section: str,
                                                    key: str) -> None:
    written, expected = SECTIONS[section][1][key]
    path = tmp_path / "sluiceway.yaml"
    path.write_text(yaml.safe_dump({section: {key: written}}))
    cfg = load_config(path)
    assert getattr(getattr(cfg, section), key) == expected
    # ... and a dotted override (the CLI's) of the same name
    cfg = load_config(None, {f"{section}.{key}": written})
    assert getattr(getattr(cfg, section), key) == expected


@pytest.mark.parametrize(("section", "key"), [
    (s, k) for s, (_m, rows) in SECTIONS.items() for k, (w, _e) in rows.items()
    if not isinstance(w, dict)])
def test_every_scalar_field_is_an_environment_variable(monkeypatch: pytest.MonkeyPatch,
                                                       section: str, key: str) -> None:
    written, expected = SECTIONS[section][1][key]
    value = str(written).lower() if isinstance(written, bool) else str(written)
    monkeypatch.setenv(f"SLUICEWAY_{section.upper()}__{key.upper()}", value)
    assert getattr(getattr(load_config(None), section), key) == expected


def test_the_store_gets_the_sections_themselves(tmp_path: Path) -> None:
    cfg = load_config(None, {"storage.data_dir": str(tmp_path / "data"),
                             "storage.compaction_enabled": False,
                             "compactor.max_compaction_parallelism": 2})
    st = open_store(cfg)
    try:
        assert st.cfg is cfg.storage and st.compactor_cfg is cfg.compactor
        assert st.compactor.threads == 2
    finally:
        st.close()


def test_the_ruler_gets_its_section_itself(tmp_path: Path) -> None:
    path = tmp_path / "sluiceway.yaml"
    path.write_text(yaml.safe_dump({
        "storage": {"data_dir": str(tmp_path / "data")},
        "ruler": {"evaluation_interval": "15s", "alertmanager_url": "http://am:9093",
                  "remote_write": {"enabled": True, "clients": {"prom": {
                      "url": "http://prom:9090/api/v1/write",
                      "queue_config": {"capacity": 7, "batch_send_deadline": "2s"}}}}}}))
    cfg = load_config(path)
    st = open_store(cfg)
    app = create_app(cfg, st)
    ruler = app.state.ctx.ruler
    try:
        assert ruler.cfg is cfg.ruler
        assert ruler.notifier is not None and ruler.notifier.urls == [
            "http://am:9093/api/v2/alerts"]
        assert ruler.writer is not None
        [client] = [c.opts for c in ruler.writer.clients]
        assert isinstance(client, RemoteWriteClient) and client.name == "prom"
        assert (client.queue_config.capacity, client.queue_config.batch_send_deadline) == (7, 2.0)
    finally:
        st.close()


def test_the_pattern_miner_gets_its_section_itself(tmp_path: Path) -> None:
    cfg = load_config(None, {"storage.data_dir": str(tmp_path / "data"),
                             "pattern_ingester.enabled": True,
                             "pattern_ingester.max_queued_bytes": "1MiB",
                             "pattern_ingester.pattern_sample_interval": "5s"})
    st = open_store(cfg)
    try:
        service = pattern_service(create_app(cfg, st).state.ctx, in_process=True)
        assert service is not None
        try:
            assert service.cfg.ingester is cfg.pattern_ingester
            assert service.max_queued_bytes == 1 << 20
            assert cfg.pattern_ingester.sample_interval_ms() == 5000
        finally:
            service.close()
    finally:
        st.close()


def test_the_cluster_node_gets_its_section_itself(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("nats")
    caplog.set_level(logging.WARNING, "sluiceway.cluster")
    with socket.socket() as sock:  # a port nothing listens on: the node keeps retrying
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = load_config(None, {"storage.data_dir": str(tmp_path / "data"),
                             "cluster.urls": f"nats://127.0.0.1:{port}",
                             "cluster.role": "querier", "cluster.timeout": "1s"})
    node = create_app(cfg).state.ctx.cluster
    assert node is not None
    try:
        assert node.cfg is cfg.cluster and node.conn.cfg is cfg.cluster
        deadline = time.monotonic() + 60  # it tried the section's URL (then closes cleanly)
        while f"127.0.0.1:{port}" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "unreachable" in caplog.text
    finally:
        node.close()


# Each component's config models, and what only it may make of them (the objects its
# config builds): no module outside the component calls these with arguments.
_OWN: dict[str, tuple[set[str], set[str]]] = {
    "store": ({"StoreConfig", "CompactorConfig", "S3Config", "NatsConfig"},
              {"S3Bucket", "JetStreamBucket"}),
    "ruler": ({"RulerConfig", "RulerStorageConfig", "RemoteWriteConfig", "RemoteWriteClient",
               "RemoteWriteQueue"}, {"Notifier", "RemoteWriter"}),
    "patterns": ({"PatternIngesterConfig"}, set()),
    "cluster": ({"ClusterConfig"}, set()),
}


# Known and documented exceptions (ARCHITECTURE.md, "One config model per component"):
# cluster mode's default chunk bucket lives on the cluster's own NATS, made from the
# `cluster:` connection keys, since there is no `storage.nats` section to take it from.
# What would remove it: one NATS connection model shared by `cluster:` and `storage.nats`.
_KNOWN = {("sluiceway/cluster/_node.py", "JetStreamBucket")}


def _called(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


@pytest.mark.parametrize("owner", sorted(_OWN))
def test_no_module_outside_a_component_builds_its_config_by_hand(owner: str) -> None:
    """A component's models are filled by validation (YAML, environment, overrides), not
    by another package copying its own fields into them; what they configure (the
    store's object store backends, the ruler's notifier and remote writer) is made from
    them inside the component (`StoreConfig.object_store`, `Ruler.from_config`)."""
    models, built = _OWN[owner]
    bad = []
    for path in sorted((REPO / "sluiceway").rglob("*.py")):
        if path.is_relative_to(REPO / "sluiceway" / owner):
            continue
        for node in ast.walk(parse_source(path)):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if (name in models and (node.args or node.keywords)) or name in built:
                where = f"{path.relative_to(REPO)}:{node.lineno}: {name}(...)"
                if (str(path.relative_to(REPO)), name) not in _KNOWN:
                    bad.append(where)
    assert bad == []
