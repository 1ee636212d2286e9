"""A Loki config file read as a Sluiceway config.

`translate` turns what Loki's single binary reads into our sections before validation:

- renamed: `limits_config` is `limits`; top-level `auth_enabled` and `no_auth_tenant` are
  `server.auth_enabled` and `server.default_tenant`; `server.http_listen_address` and
  `http_listen_port` make `server.listen`; `ingester.max_chunk_age`,
  `chunk_idle_period` and `flush_check_period` are the storage keys of those names;
- known to Loki, no meaning here (its other sections, and the keys of a section we have
  that we do not implement): dropped, and listed for one warning;
- known to nobody: an error naming the key and the closest known one.

The key lists are Loki's (main-65e30f8) top-level keys of each section; a section's own
nested keys are its model's business. A key our model has always wins over the list, so a
section that grows (the ruler's, say) needs no change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sluiceway.model import unknown_key

LOKI_TOP_LEVEL = frozenset([
    "target", "auth_enabled", "lbac", "no_auth_tenant", "http_prefix", "ballast_bytes", "server",
    "internal_server", "ui", "distributor", "querier", "query_engine", "query_scheduler",
    "frontend", "query_range", "ruler", "ruler_storage", "ingester_client", "ingester",
    "pattern_ingester", "index_gateway", "bloom_build", "bloom_gateway", "storage_config",
    "chunk_store_config", "schema_config", "compactor", "compactor_client", "compactor_grpc_client",
    "limits_config", "frontend_worker", "memberlist", "kafka_config", "dataobj", "ingest_limits",
    "ingest_limits_frontend", "ingest_limits_frontend_client", "runtime_config",
    "operational_config", "tracing", "analytics", "profiling", "tenant_limits_allow_publish",
    "common", "shutdown_delay", "metrics_namespace"
])

LOKI_KEYS: dict[str, frozenset[str]] = {
    "server": frozenset([
        "http_listen_network", "http_listen_address", "http_listen_port", "http_listen_conn_limit",
        "grpc_listen_network", "grpc_listen_address", "grpc_listen_port", "grpc_listen_conn_limit",
        "grpc_collect_max_streams_by_conn", "proxy_protocol_enabled", "tls_cipher_suites",
        "tls_min_version", "http_tls_config", "grpc_tls_config", "register_instrumentation",
        "report_grpc_codes_in_instrumentation_label_enabled", "graceful_shutdown_timeout",
        "http_server_read_timeout", "http_server_read_header_timeout", "http_server_write_timeout",
        "http_server_idle_timeout", "http_log_closed_connections_without_response_enabled",
        "grpc_server_max_recv_msg_size", "grpc_server_max_send_msg_size",
        "grpc_server_max_concurrent_streams", "grpc_server_max_connection_idle",
        "grpc_server_max_connection_age", "grpc_server_max_connection_age_grace",
        "grpc_server_keepalive_time", "grpc_server_keepalive_timeout",
        "grpc_server_min_time_between_pings", "grpc_server_ping_without_stream_allowed",
        "grpc_server_num_workers", "grpc_server_stats_tracking_enabled",
        "grpc_server_recv_buffer_pools_enabled", "grpc_server_read_buffer_size",
        "grpc_server_write_buffer_size", "log_format", "log_level", "log_source_ips_enabled",
        "log_source_ips_full", "log_source_ips_header", "log_source_ips_regex",
        "log_request_headers", "log_request_at_info_level_enabled",
        "log_request_exclude_headers_list", "trace_request_headers",
        "trace_request_exclude_headers_list", "http_path_prefix", "cluster_validation",
        "create_new_traces"
    ]),
    "limits_config": frozenset([
        "ingestion_rate_strategy", "ingestion_rate_mb", "ingestion_burst_size_mb",
        "max_label_name_length", "max_label_value_length", "max_label_names_per_series",
        "reject_old_samples", "reject_old_samples_max_age", "creation_grace_period",
        "max_line_size", "max_line_size_truncate", "max_line_size_truncate_identifier",
        "increment_duplicate_timestamp", "simulated_push_latency", "discover_generic_fields",
        "discover_service_name", "discover_log_levels", "log_level_fields",
        "log_level_from_json_max_depth", "use_owned_stream_count", "max_streams_per_user",
        "max_global_streams_per_user", "per_stream_rate_limit", "per_stream_rate_limit_burst",
        "max_chunks_per_query", "max_query_series", "max_query_lookback", "max_query_length",
        "max_query_range", "max_query_parallelism", "tsdb_max_query_parallelism",
        "tsdb_max_bytes_per_shard", "tsdb_sharding_strategy", "tsdb_precompute_chunks",
        "cardinality_limit", "max_streams_matchers_per_query", "max_concurrent_tail_requests",
        "max_entries_limit_per_query", "max_cache_freshness_per_query",
        "max_metadata_cache_freshness", "max_stats_cache_freshness", "max_queriers_per_tenant",
        "max_query_capacity", "query_ready_index_num_days", "query_timeout",
        "split_queries_by_interval", "split_metadata_queries_by_interval",
        "split_recent_metadata_queries_by_interval", "recent_metadata_query_window",
        "split_instant_metric_queries_by_interval", "engine_results_cache_time_bucket_interval",
        "split_ingester_queries_by_interval", "min_sharding_lookback", "max_query_bytes_read",
        "max_querier_bytes_read", "volume_enabled", "volume_max_series",
        "ruler_max_rules_per_rule_group", "ruler_max_rule_groups_per_tenant",
        "ruler_alertmanager_config", "ruler_tenant_shard_size", "ruler_remote_write_disabled",
        "ruler_remote_write_config", "ruler_remote_evaluation_timeout",
        "ruler_remote_evaluation_max_response_size", "deletion_mode", "retention_period",
        "retention_stream", "shard_streams", "blocked_queries", "required_labels",
        "minimum_labels_number", "index_gateway_shard_size", "index_gateway_max_capacity",
        "bloom_gateway_enable_filtering", "bloom_build_max_builders",
        "bloom_build_task_max_retries", "bloom_build_builder_response_timeout",
        "bloom_creation_enabled", "dataobj_index_compaction_enabled",
        "dataobj_log_compaction_enabled", "bloom_planning_strategy",
        "bloom_split_series_keyspace_by", "bloom_task_target_series_chunk_size",
        "bloom_block_encoding", "bloom_prefetch_blocks", "bloom_max_block_size",
        "bloom_max_bloom_size", "allow_structured_metadata", "max_structured_metadata_size",
        "max_structured_metadata_entries_count", "otlp_config", "block_ingestion_policy_until",
        "block_ingestion_until", "block_ingestion_status_code", "enforced_labels",
        "policy_enforced_labels", "policy_stream_mapping", "policy_override_limits",
        "ingestion_partitions_tenant_shard_size", "shard_aggregations",
        "pattern_ingester_tokenizable_json_fields_default",
        "pattern_ingester_tokenizable_json_fields_append",
        "pattern_ingester_tokenizable_json_fields_delete", "metric_aggregation_enabled",
        "pattern_persistence_enabled", "pattern_persistence_granularity", "pattern_rate_threshold",
        "s3_sse_type", "s3_sse_kms_key_id", "s3_sse_kms_encryption_context", "debug_engine_tasks",
        "debug_engine_streams", "sort_schema", "enable_multi_variant_queries"
    ]),
    "compactor": frozenset([
        "working_directory", "compaction_interval", "apply_retention_interval", "retention_enabled",
        "retention_delete_delay", "retention_delete_worker_count", "retention_table_timeout",
        "retention_backoff_config", "delete_request_store", "delete_request_store_key_prefix",
        "delete_request_store_db_type", "backup_delete_request_store_db_type", "delete_batch_size",
        "delete_request_cancel_period", "delete_max_interval", "max_compaction_parallelism",
        "upload_parallelism", "compactor_ring", "tables_to_compact", "skip_latest_n_tables",
        "horizontal_scaling_mode", "worker_config", "jobs_config",
        "deletion_marker_object_store_prefix", "deletion_mode", "shared_store",
        "shared_store_key_prefix"
    ]),
    "querier": frozenset([
        "tail_max_duration", "extra_query_delay", "query_ingesters_within", "engine",
        "max_concurrent", "query_store_only", "query_ingester_only", "multi_tenant_queries_enabled",
        "per_request_limits_enabled", "query_partition_ingesters"
    ]),
    "ingester": frozenset([
        "lifecycler", "concurrent_flushes", "flush_check_period", "flush_op_backoff",
        "flush_op_timeout", "chunk_retain_period", "chunk_idle_period", "chunk_block_size",
        "chunk_target_size", "chunk_encoding", "max_chunk_age", "autoforget_unhealthy",
        "sync_period", "sync_min_utilization", "max_returned_stream_errors",
        "query_store_max_look_back_period", "wal", "index_shards", "max_dropped_streams",
        "shutdown_marker_path", "owned_streams_check_interval", "delegate_stream_limits_enabled",
        "kafka_ingestion"
    ]),
    "runtime_config": frozenset([
        "period", "file", "http_client_timeout", "http_client_cluster_validation",
        "http_client_disable_keep_alives"
    ]),
    "ruler": frozenset([
        "external_url", "datasource_uid", "external_labels", "ruler_client", "evaluation_interval",
        "poll_interval", "storage", "rule_path", "alertmanager_url",
        "enable_alertmanager_discovery", "alertmanager_refresh_interval", "enable_alertmanager_v2",
        "alert_relabel_configs", "notification_queue_capacity", "notification_timeout",
        "alertmanager_client", "for_outage_tolerance", "for_grace_period", "resend_delay",
        "enable_sharding", "sharding_strategy", "sharding_algo", "search_pending_for", "ring",
        "flush_period", "enable_api", "enabled_tenants", "disabled_tenants", "query_stats_enabled",
        "disable_rule_group_label", "wal", "wal_cleaner", "remote_write", "evaluation"
    ]),
    "pattern_ingester": frozenset([
        "enabled", "lifecycler", "client_config", "concurrent_flushes", "flush_check_period",
        "max_clusters", "max_eviction_ratio", "metric_aggregation", "pattern_persistence",
        "tee_config", "connection_timeout", "max_allowed_line_length", "retain_for",
        "max_chunk_age", "pattern_sample_interval", "volume_threshold"
    ]),
    "ruler_storage": frozenset([
        "backend", "local", "s3", "gcs", "azure", "swift", "filesystem", "alibaba", "bos",
        "storage_prefix"
    ]),
}

# Our section name -> Loki's, where they differ.
LOKI_NAME = {"limits": "limits_config"}
# Keys of Loki's `ingester` that mean what our `storage` keys of the same name mean.
INGESTER_TO_STORAGE = ("max_chunk_age", "chunk_idle_period", "flush_check_period")
_DEFAULT_HOST, _DEFAULT_PORT = "127.0.0.1", 3100


@dataclass(slots=True)
class Translated:
    """The config in our sections, what was left out, and the problems found."""

    data: dict[str, Any]
    ignored: list[str] = field(default_factory=list)  # dotted keys as the file spells them
    errors: list[str] = field(default_factory=list)
    spelled: dict[str, str] = field(default_factory=dict)  # our section -> the file's name


def _section(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A copy of section `name` put back into `doc`, or None when it is absent or not a
    mapping (validation reports that)."""
    value = doc.get(name)
    if not isinstance(value, dict):
        return None
    copy: dict[str, Any] = dict(value)
    doc[name] = copy
    return copy


def _move(out: Translated, src: dict[str, Any], key: str, dst: dict[str, Any], dst_key: str,
          src_path: str, dst_path: str) -> None:
    if key not in src:
        return
    if dst_key in dst:
        out.errors.append(f"both '{src_path}' and '{dst_path}' are set; use one")
    dst[dst_key] = src.pop(key)


def _listen(out: Translated, server: dict[str, Any]) -> None:
    """`http_listen_address` / `http_listen_port` (Loki's) as `listen`. Without an address
    the host stays ours (127.0.0.1), not Loki's every interface."""
    if "http_listen_address" not in server and "http_listen_port" not in server:
        return
    if "listen" in server:
        out.errors.append("both 'server.listen' and 'server.http_listen_port' / "
                          "'http_listen_address' are set; use one")
        return
    host = server.pop("http_listen_address", None) or _DEFAULT_HOST
    port = server.pop("http_listen_port", None)
    port = _DEFAULT_PORT if port is None else port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        out.errors.append(f"server.http_listen_port: must be a port number, got {port!r}")
        return
    server["listen"] = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _renames(out: Translated) -> None:
    doc = out.data
    for ours, loki in LOKI_NAME.items():
        if loki in doc:
            if ours in doc:
                out.errors.append(f"both '{ours}' and '{loki}' are set; use one")
                continue
            doc[ours] = doc.pop(loki)
            out.spelled[ours] = loki
    for top, key in (("auth_enabled", "auth_enabled"), ("no_auth_tenant", "default_tenant")):
        if top in doc:
            server = _section(doc, "server")
            if server is None:
                server = doc["server"] = {}
            _move(out, doc, top, server, key, top, f"server.{key}")
    target = doc.pop("target", None)
    if target not in (None, "all"):
        out.errors.append(f"target: {target!r} is not supported: Sluiceway runs every part "
                          "in one process (target: all)")
    elif target is not None:
        out.ignored.append("target")
    server = _section(doc, "server")
    if server is not None:
        _listen(out, server)
    ingester = _section(doc, "ingester")
    if ingester is not None:
        storage = _section(doc, "storage")
        if storage is None and any(k in ingester for k in INGESTER_TO_STORAGE):
            storage = doc["storage"] = {}
        for key in INGESTER_TO_STORAGE:
            if storage is not None:
                _move(out, ingester, key, storage, key, f"ingester.{key}", f"storage.{key}")


def translate(doc: dict[str, Any], sections: Mapping[str, type[BaseModel]]) -> Translated:
    """`doc` (a parsed config file) in terms of our `sections` (name -> model)."""
    out = Translated(dict(doc))
    for key in out.data:
        if not isinstance(key, str):
            out.errors.append(f"config keys must be text, got {key!r}")
            return out
    _renames(out)
    for name in list(out.data):
        written = out.spelled.get(name, name)
        model = sections.get(name)
        if model is None:
            if name in LOKI_TOP_LEVEL:
                body = out.data.pop(name)
                if name == "ingester" and isinstance(body, dict):  # some keys were mapped
                    out.ignored += [f"ingester.{k}" for k in body]
                else:
                    out.ignored.append(name)
            else:
                out.errors.append(unknown_key(name, [*sections, *LOKI_TOP_LEVEL]))
                del out.data[name]  # reported; validation looks at the rest
            continue
        body = _section(out.data, name)
        if body is None:
            continue
        loki_keys = LOKI_KEYS.get(LOKI_NAME.get(name, name), frozenset())
        for key in list(body):
            if key in model.model_fields:
                continue
            if key in loki_keys:
                del body[key]
                out.ignored.append(f"{written}.{key}")
            else:
                out.errors.append(unknown_key(f"{written}.{key}",
                                              [*model.model_fields, *loki_keys]))
                del body[key]
    return out
