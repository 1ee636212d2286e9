"""A Promtail config read as an agent config.

`translate(doc)` turns Promtail's sections into the agent's:

- `clients` (and the older single `client`): one client each, with its own queue;
  `tenant_id`, `batchwait`, `batchsize`, `backoff_config`, `external_labels`, `timeout`,
  `headers`, `basic_auth`, `bearer_token(_file)`, `authorization`, `tls_config`;
- `positions.filename`: read once at the first start so nothing is sent twice; the agent's
  own data lives beside it (`<dir>/sluiceway-agent`); `sync_period`, `ignore_invalid_yaml`;
- `server.http_listen_address` / `http_listen_port` (or `disable`): the agent's own
  address (/metrics, /ready); `log_level`;
- `scrape_configs`: `static_configs`, `file_sd_configs`, `kubernetes_sd_configs` (pods'
  log files), `syslog`, `loki_push_api`, `journal`, each with its `relabel_configs` and
  `pipeline_stages` (the agent's stages are Promtail's, by name and key).

Where a key that changes what is kept or lost is present, it keeps Promtail's meaning and
`Notes.kept` says so (announced at start); where it is absent, the agent's never-drop
defaults apply. Stages and scrape types the agent does not have are listed in
`Notes.unsupported` (one message at start) and left out; the rest runs. Keys Promtail
knows that mean nothing here go to `Notes.ignored`; keys nobody knows are errors naming
the closest known key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluiceway.agent._config import STAGE_NAMES
from sluiceway.model import unknown_key

TOP = {"server", "client", "clients", "positions", "scrape_configs", "limits_config",
       "target_config", "options", "tracing", "global", "wal"}
CLIENT = {"url", "headers", "tenant_id", "batchwait", "batchsize", "basic_auth", "oauth2",
          "bearer_token", "bearer_token_file", "proxy_url", "tls_config", "backoff_config",
          "drop_rate_limited_batches", "external_labels", "timeout", "authorization",
          "follow_redirects", "enable_http2", "no_proxy", "proxy_from_environment",
          "proxy_connect_header", "stream_lag_labels"}
SERVER = {"disable", "profiling_enabled", "http_listen_address", "http_listen_port",
          "http_listen_network", "grpc_listen_address", "grpc_listen_port",
          "grpc_listen_network", "register_instrumentation", "graceful_shutdown_timeout",
          "http_server_read_timeout", "http_server_write_timeout", "http_server_idle_timeout",
          "grpc_server_max_recv_msg_size", "grpc_server_max_send_msg_size",
          "grpc_server_max_concurrent_streams", "log_level", "log_format", "http_path_prefix",
          "health_check_target", "enable_runtime_reload", "http_tls_config",
          "grpc_tls_config"}
SCRAPE = {"job_name", "pipeline_stages", "static_configs", "file_sd_configs",
          "kubernetes_sd_configs", "relabel_configs", "journal", "syslog", "loki_push_api",
          "decompression", "encoding", "windows_events", "gcplog", "azure_event_hub",
          "kafka", "gelf", "cloudflare", "heroku_drain", "consul_sd_configs",
          "consulagent_sd_configs", "docker_sd_configs", "serverset_sd_configs",
          "triton_sd_configs", "nomad_sd_configs", "eureka_sd_configs", "limits_config"}
SCRAPE_UNSUPPORTED = ("windows_events", "gcplog", "azure_event_hub", "kafka", "gelf",
                      "cloudflare", "heroku_drain", "consul_sd_configs",
                      "consulagent_sd_configs", "docker_sd_configs", "serverset_sd_configs",
                      "triton_sd_configs", "nomad_sd_configs", "eureka_sd_configs")
SYSLOG = {"listen_address", "listen_protocol", "tls_config", "idle_timeout",
          "label_structured_data", "labels", "use_incoming_timestamp", "max_message_length",
          "syslog_format", "use_rfc5424_message"}
PUSH = {"server", "labels", "use_incoming_timestamp"}
JOURNAL = {"json", "max_age", "labels", "path", "matches"}
STAGES_UNSUPPORTED = {"metrics", "geoip", "eventlogmessage", "luhn", "non_indexed_labels"}
KUBERNETES_DERIVED = ("__meta_kubernetes_namespace", "__meta_kubernetes_pod_name",
                      "__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_container_name")
PODS_ROOT_ENV = "SLUICEWAY_KUBERNETES_PODS_ROOT"


@dataclass
class Notes:
    """What a translation says: Promtail meanings kept, what is not supported (skipped),
    keys that mean nothing here, and errors. `where` ties a note to a section of the
    native config (`clients[0]`, `inputs[2]`, or "" for the whole)."""

    kept: list[tuple[str, str]] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def of(self, where: str) -> list[str]:
        return ([f"promtail: {t}" for w, t in self.kept if w == where]
                + [f"not supported, skipped: {t}" for w, t in self.unsupported if w == where]
                + [f"no effect here: {t}" for w, t in self.ignored if w == where])


def looks_like_promtail(doc: dict[str, Any]) -> bool:
    return "inputs" not in doc and bool({"clients", "client", "scrape_configs"} & set(doc))


def _check(doc: dict[str, Any], known: set[str], where: str, notes: Notes) -> None:
    for k in doc:
        if k not in known:
            notes.errors.append(unknown_key(f"{where}.{k}" if where else str(k), known))


def _read_secret(path: Any, what: str, notes: Notes) -> str | None:
    try:
        return Path(str(path)).read_text().strip()
    except OSError as exc:
        notes.errors.append(f"{what}: cannot read {path}: {exc.strerror}")
        return None


def _client(c: dict[str, Any], i: int, notes: Notes) -> dict[str, Any]:
    where = f"clients[{i}]"
    _check(c, CLIENT, where, notes)
    out: dict[str, Any] = {"url": c.get("url")}
    if c.get("tenant_id"):
        out["tenant"] = str(c["tenant_id"])
    if "timeout" in c:
        out["timeout"] = c["timeout"]
    batch: dict[str, Any] = {}
    if "batchwait" in c:
        batch["max_wait"] = c["batchwait"]
    if "batchsize" in c:
        batch["max_bytes"] = c["batchsize"]
    if batch:
        out["batch"] = batch
    headers = {str(k): str(v) for k, v in (c.get("headers") or {}).items()
               if str(k).lower() != "x-scope-orgid"}  # Promtail's own header wins
    auth: dict[str, Any] = {}
    ba = c.get("basic_auth") or {}
    if ba:
        auth["username"] = ba.get("username")
        pw = ba.get("password")
        if pw is None and ba.get("password_file"):
            pw = _read_secret(ba["password_file"], f"{where}.basic_auth.password_file", notes)
        auth["password"] = pw
    token = c.get("bearer_token")
    if token is None and c.get("bearer_token_file"):
        token = _read_secret(c["bearer_token_file"], f"{where}.bearer_token_file", notes)
    if token:
        auth["bearer_token"] = token
    az = c.get("authorization") or {}
    if az:
        cred = az.get("credentials")
        if cred is None and az.get("credentials_file"):
            cred = _read_secret(az["credentials_file"], f"{where}.authorization", notes)
        headers["Authorization"] = f"{az.get('type') or 'Bearer'} {cred or ''}".strip()
    if auth:
        out["auth"] = auth
    if headers:
        out["headers"] = headers
    tls = dict(c.get("tls_config") or {})
    if tls.pop("server_name", None) is not None:
        notes.unsupported.append((where, "tls_config.server_name (the URL's host is checked)"))
    if tls:
        out["tls"] = {k: tls[k] for k in ("ca_file", "cert_file", "key_file",
                                          "insecure_skip_verify") if k in tls}
    backoff = c.get("backoff_config") or {}
    retry: dict[str, Any] = {}
    if "min_period" in backoff:
        retry["min_backoff"] = backoff["min_period"]
    if "max_period" in backoff:
        retry["max_backoff"] = backoff["max_period"]
    if "max_retries" in backoff:
        n = int(backoff["max_retries"])
        # Promtail's count is of attempts: after the n-th failed send the batch is dropped.
        retry["max_retries"] = None if n <= 0 else n - 1
        if n > 0:  # whatever holds the batch, the spill included
            retry["max_retries_in_spill"] = True
        if n > 0:
            notes.kept.append((where, f"backoff_config.max_retries: {n} — a batch that still "
                               f"fails (429, 5xx, no answer) after {n} attempts is dropped "
                               "and counted lost (without the key: retried until delivered)"))
    if retry:
        out["retry"] = retry
    if c.get("external_labels"):
        out["external_labels"] = {str(k): str(v) for k, v in c["external_labels"].items()}
    for key in ("oauth2", "proxy_url", "drop_rate_limited_batches"):
        if c.get(key):
            notes.unsupported.append((where, f"{key} (a 429 is retried)"
                                      if key == "drop_rate_limited_batches" else key))
    for key in ("follow_redirects", "enable_http2", "no_proxy", "proxy_from_environment",
                "proxy_connect_header", "stream_lag_labels"):
        if key in c:
            notes.ignored.append((where, key))
    return out


def _listen(server: dict[str, Any], default_port: int | None) -> str | None:
    port = server.get("http_listen_port", default_port)
    if port is None:
        return None
    host = server.get("http_listen_address") or "0.0.0.0"
    return f"{host}:{int(port)}"


def _stages(stages: Any, where: str, notes: Notes) -> list[Any]:
    out = []
    for st in stages or []:
        if isinstance(st, dict) and len(st) == 1:
            (name, opts), = st.items()
            if name in STAGES_UNSUPPORTED:
                notes.unsupported.append((where, f"pipeline stage {name}"))
                continue
            if name == "match" and isinstance(opts, dict):
                opts = {**opts, "stages": _stages(opts.get("stages"), where, notes)}
                st = {name: opts}
            if name not in STAGE_NAMES:
                notes.errors.append(unknown_key(f"{where}.pipeline_stages.{name}", STAGE_NAMES))
                continue
        out.append(st)
    return out


def _relabel_sources(rules: list[Any]) -> set[str]:
    names: set[str] = set()
    for r in rules:
        if isinstance(r, dict):
            names |= {str(s) for s in r.get("source_labels") or []}
    return names


def _scrape(job: dict[str, Any], j: int, base: dict[str, Any], first: int,
            notes: Notes) -> list[dict[str, Any]]:
    """The inputs of one scrape config (indexes start at `first`, for notes)."""
    name = str(job.get("job_name", f"#{j}"))
    _check(job, SCRAPE, f"scrape_configs[{name}]", notes)
    stages = _stages(job.get("pipeline_stages"), f"inputs[{first}]", notes)
    relabel = list(job.get("relabel_configs") or [])
    common = {"pipeline": stages, **({"relabel_configs": relabel} if relabel else {})}
    inputs: list[dict[str, Any]] = []
    for key in SCRAPE_UNSUPPORTED:
        if job.get(key):
            notes.unsupported.append(("", f"scrape_configs[{name}].{key}"))
    for key in ("decompression", "limits_config"):
        if job.get(key):
            notes.unsupported.append(("", f"scrape_configs[{name}].{key}"))
    enc = str(job.get("encoding") or "").lower()
    if enc and enc not in ("utf-8", "utf8"):
        notes.unsupported.append(("", f"scrape_configs[{name}].encoding {enc} (read as UTF-8)"))
    file_base = {"type": "file", "start_at": "beginning", **base, **common}
    for sc in job.get("static_configs") or []:
        labels = {str(k): str(v) for k, v in (sc.get("labels") or {}).items()}
        path = labels.pop("__path__", None)
        exclude = labels.pop("__path_exclude__", None)
        if path is None and not relabel:
            notes.ignored.append(("", f"scrape_configs[{name}].static_configs without "
                                  "__path__"))
            continue
        # Relabeling sees the target's labels, `__path__` included: pass it through them.
        inp = {**file_base, "labels": labels,
               "paths": [path] if path is not None else ["/nonexistent"]}
        if exclude is not None:
            inp["exclude"] = [exclude]
        inputs.append(inp)
    for sd in job.get("file_sd_configs") or []:
        inputs.append({**file_base, "discovery": {
            "type": "file_sd", "files": list(sd.get("files") or []),
            **({"refresh_interval": sd["refresh_interval"]} if "refresh_interval" in sd
               else {})}})
    for k8s in job.get("kubernetes_sd_configs") or []:
        role = k8s.get("role", "pod")
        if role != "pod":
            notes.unsupported.append(("", f"scrape_configs[{name}].kubernetes_sd_configs role "
                                      f"{role} (only pods' log files)"))
            continue
        missing = sorted(n for n in _relabel_sources(relabel)
                         if n.startswith("__meta_kubernetes_") and n not in KUBERNETES_DERIVED)
        if missing:
            notes.unsupported.append(("", f"scrape_configs[{name}]: {', '.join(missing)} "
                                      "(not in the pods' log directory; empty here)"))
        ns = (k8s.get("namespaces") or {}).get("names") or []
        inputs.append({**file_base, "discovery": {
            "type": "kubernetes_pods", "root": os.environ.get(PODS_ROOT_ENV, "/var/log/pods"),
            **({"namespaces": ns} if ns else {})}})
        for key in ("api_server", "kubeconfig_file", "selectors", "basic_auth", "bearer_token",
                    "bearer_token_file", "tls_config", "proxy_url"):
            if key in k8s:
                notes.ignored.append(("", f"scrape_configs[{name}].kubernetes_sd_configs.{key} "
                                      "(no API server is asked)"))
    if job.get("syslog") is not None:
        inputs.append(_syslog(job["syslog"], name, common, notes))
    if job.get("loki_push_api") is not None:
        inputs.append(_push(job["loki_push_api"], name, common, notes))
    if job.get("journal") is not None:
        inputs.append(_journal(job["journal"], name, common, notes))
    return inputs


def _syslog(s: dict[str, Any], name: str, common: dict[str, Any],
            notes: Notes) -> dict[str, Any]:
    _check(s, SYSLOG, f"scrape_configs[{name}].syslog", notes)
    out: dict[str, Any] = {"type": "syslog", **common,
                           "listen": s.get("listen_address", "0.0.0.0:1514"),
                           "protocol": s.get("listen_protocol", "tcp"), "label_fields": [],
                           "use_incoming_timestamp": bool(s.get("use_incoming_timestamp")),
                           "labels": {str(k): str(v) for k, v in (s.get("labels") or {}).items()}}
    for key in ("label_structured_data", "use_rfc5424_message", "max_message_length",
                "idle_timeout"):
        if key in s:
            out[key] = s[key]
    if s.get("tls_config"):
        out["tls"] = {k: v for k, v in s["tls_config"].items()
                      if k in ("cert_file", "key_file", "ca_file")}
    if "syslog_format" in s:
        notes.ignored.append(("", f"scrape_configs[{name}].syslog.syslog_format (RFC 5424 and "
                              "3164 are both read)"))
    return out


def _push(p: dict[str, Any], name: str, common: dict[str, Any],
          notes: Notes) -> dict[str, Any]:
    _check(p, PUSH, f"scrape_configs[{name}].loki_push_api", notes)
    server = p.get("server") or {}
    _check(server, SERVER, f"scrape_configs[{name}].loki_push_api.server", notes)
    return {"type": "loki_push", **common, "listen": _listen(server, 3500),
            "use_incoming_timestamp": bool(p.get("use_incoming_timestamp")),
            "labels": {str(k): str(v) for k, v in (p.get("labels") or {}).items()}}


def _journal(jc: dict[str, Any], name: str, common: dict[str, Any],
             notes: Notes) -> dict[str, Any]:
    from sluiceway.agent._journal import journal_available

    _check(jc, JOURNAL, f"scrape_configs[{name}].journal", notes)
    why = journal_available(jc.get("path"))
    if why is not None:
        notes.unsupported.append(("", f"scrape_configs[{name}].journal: unavailable here "
                                  f"({why})"))
    out: dict[str, Any] = {"type": "journal", **common,
                           "labels": {str(k): str(v) for k, v in (jc.get("labels") or {}).items()}}
    for key in ("json", "max_age", "path", "matches"):
        if key in jc:
            out[key] = jc[key]
    return out


def translate(doc: dict[str, Any], source: Path | None = None) -> tuple[dict[str, Any], Notes]:
    """The native config of a Promtail config, and what the translation says."""
    notes = Notes()
    _check(doc, TOP, "", notes)
    out: dict[str, Any] = {}
    clients = list(doc.get("clients") or [])
    if doc.get("client"):
        clients.append(doc["client"])
    if not clients:
        notes.errors.append("clients: a Promtail config needs at least one client url")
    out["clients"] = [_client(c if isinstance(c, dict) else {}, i, notes)
                      for i, c in enumerate(clients)]
    server = doc.get("server") or {}
    _check(server, SERVER, "server", notes)
    if server.get("disable"):
        out["listen"] = None
    else:
        listen = _listen(server, None)
        if listen is not None:
            out["listen"] = listen
    for key in sorted(set(server) - {"disable", "http_listen_address", "http_listen_port",
                                     "log_level", "register_instrumentation"}):
        notes.ignored.append(("", f"server.{key}"))
    positions = doc.get("positions") or {}
    _check(positions, {"filename", "sync_period", "ignore_invalid_yaml"}, "positions", notes)
    filename = Path(str(positions.get("filename", "/var/log/positions.yaml")))
    out["data_dir"] = str(filename.parent / "sluiceway-agent")
    out["promtail_positions"] = str(filename)
    if positions.get("ignore_invalid_yaml"):
        out["promtail_positions_ignore_invalid"] = True
    if "sync_period" in positions:
        out["positions_sync"] = positions["sync_period"]
    notes.kept.append(("", f"positions.filename {filename}: read at the first start, so files "
                       "go on from where Promtail was; this agent keeps its own positions "
                       f"(advanced only once lines are delivered) in {filename.parent}/"
                       "sluiceway-agent"))
    base: dict[str, Any] = {}
    target = doc.get("target_config") or {}
    if "sync_period" in target:
        base["glob_interval"] = target["sync_period"]
    watch = (doc.get("global") or {}).get("file_watch_config") or {}
    if "min_poll_frequency" in watch:
        base["poll_interval"] = watch["min_poll_frequency"]
    for key in ("limits_config", "wal", "options", "tracing"):
        if doc.get(key):
            (notes.unsupported if key in ("limits_config", "wal") else notes.ignored).append(
                ("", key + (" (the disk spill keeps what the backend does not take)"
                            if key == "wal" else "")))
    inputs: list[dict[str, Any]] = []
    for j, job in enumerate(doc.get("scrape_configs") or []):
        if not isinstance(job, dict):
            notes.errors.append(f"scrape_configs[{j}]: a scrape config is a mapping")
            continue
        inputs += _scrape(job, j, base, len(inputs), notes)
    if not inputs:
        notes.errors.append("scrape_configs: nothing this agent can read (no supported "
                            "scrape config)")
    out["inputs"] = inputs
    return out, notes


def log_level(doc: dict[str, Any]) -> str | None:
    level = (doc.get("server") or {}).get("log_level")
    return str(level) if level else None

