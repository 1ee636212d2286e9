"""Promtail's metric names, served beside the agent's own on /metrics, so dashboards and
alerts made for Promtail keep working:

- `promtail_sent_entries_total{host}`, `promtail_sent_bytes_total{host}`: lines and body
  bytes each client's backend acknowledged (`host` is the URL's host:port);
- `promtail_dropped_entries_total{host,reason,tenant}`: lines given up, with Promtail's
  reasons (`rate_limited`, `stream_limited`, `line_too_long`, else `ingester_error`);
- `promtail_request_duration_seconds{host,status_code}`: a histogram of push requests,
  until the answer's headers;
- `promtail_read_bytes_total{path}` (read offset) and `promtail_file_bytes_total{path}`
  (file size), gauges as Promtail has them; `promtail_files_active_total`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

import httpx

from sluiceway.model import quote

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REASONS = {"rate_limited": "rate_limited", "per_stream_rate_limit": "stream_limited",
           "stream_limited": "stream_limited", "line_too_long": "line_too_long",
           "too_large": "line_too_long"}


def host_of(url: str) -> str:
    return urlsplit(url).netloc


class RequestDurations:
    """Push request durations by (host, status code), filled by httpx event hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, host: str, status: int, seconds: float) -> None:
        key = (host, str(status))
        with self._lock:
            counts = self.counts.setdefault(key, [0] * (len(BUCKETS) + 1))
            for i, edge in enumerate(BUCKETS):
                if seconds <= edge:
                    counts[i] += 1
            counts[-1] += 1
            self.sums[key] += seconds

    def watch(self, client: httpx.Client, url: str) -> None:
        """Time every request `client` makes to `url`'s host."""
        host = host_of(url)

        def started(request: httpx.Request) -> None:
            request.extensions["sluiceway_t0"] = time.monotonic()

        def answered(response: httpx.Response) -> None:
            t0 = response.request.extensions.get("sluiceway_t0")
            if t0 is not None:
                self.observe(host, response.status_code, time.monotonic() - t0)

        hooks = client.event_hooks
        client.event_hooks = {"request": [*hooks.get("request", []), started],
                              "response": [*hooks.get("response", []), answered]}

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"host": h, "status_code": c, "buckets": list(v), "sum": self.sums[(h, c)]}
                    for (h, c), v in sorted(self.counts.items())]


def _line(name: str, labels: dict[str, str], value: float) -> str:
    lab = ",".join(f"{k}={quote(v)}" for k, v in labels.items())
    return f"{name}{{{lab}}} {value}" if lab else f"{name} {value}"


def promtail_metrics(doc: dict[str, Any]) -> str:
    """The Promtail-named metrics of a status document."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")

    clients = doc.get("clients") or []
    sent: dict[str, float] = defaultdict(float)
    sent_bytes: dict[str, float] = defaultdict(float)
    dropped: dict[tuple[str, str, str], float] = defaultdict(float)
    for c in clients:
        host = host_of(c["url"])
        sent[host] += c["shipped"]
        sent_bytes[host] += c.get("bytes_shipped", 0)
        for reason, n in c["lost_by_reason"].items():
            dropped[(host, REASONS.get(reason, "ingester_error"), c.get("tenant") or "")] += n
    family("promtail_sent_entries_total", "counter", "Number of log entries sent to the "
           "ingester.")
    out += [_line("promtail_sent_entries_total", {"host": h}, v) for h, v in sent.items()]
    family("promtail_sent_bytes_total", "counter", "Number of bytes sent.")
    out += [_line("promtail_sent_bytes_total", {"host": h}, v) for h, v in sent_bytes.items()]
    family("promtail_dropped_entries_total", "counter", "Number of log entries dropped "
           "because failed to be sent to the ingester after all retries.")
    out += [_line("promtail_dropped_entries_total", {"host": h, "reason": r, "tenant": t}, v)
            for (h, r, t), v in sorted(dropped.items())]
    family("promtail_request_duration_seconds", "histogram", "Duration of send requests.")
    for h in doc.get("request_durations") or []:
        base = {"host": h["host"], "status_code": h["status_code"]}
        for edge, n in zip((*BUCKETS, "+Inf"), h["buckets"], strict=True):
            out.append(_line("promtail_request_duration_seconds_bucket",
                             {**base, "le": str(edge)}, n))
        out.append(_line("promtail_request_duration_seconds_sum", base, h["sum"]))
        out.append(_line("promtail_request_duration_seconds_count", base, h["buckets"][-1]))
    files = doc.get("files") or []
    family("promtail_read_bytes_total", "gauge", "Number of bytes read.")
    out += [_line("promtail_read_bytes_total", {"path": f["path"]}, f["read_offset"])
            for f in files]
    family("promtail_file_bytes_total", "gauge", "Number of bytes total.")
    out += [_line("promtail_file_bytes_total", {"path": f["path"]}, f["size"]) for f in files]
    family("promtail_files_active_total", "gauge", "Number of active files.")
    out.append(_line("promtail_files_active_total", {},
                     sum(1 for f in files if not f.get("released"))))
    return "\n".join(out) + "\n"
