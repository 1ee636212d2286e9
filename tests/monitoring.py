"""The ruler's neighbours for tests: a capture server that records the requests it gets (as
the fixture recorder did), and the real Debian `prometheus-alertmanager` and `prometheus`
as processes on free ports with their own temp config and data."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import ExternalProcess, free_port


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at_ns: int


class CaptureServer:
    """An HTTP server on 127.0.0.1 that answers `status` and keeps every request."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[Captured] = []
        self.status = status
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.requests.append(Captured(self.command, self.path, headers, body,
                                               time.time_ns()))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[Captured]:
        return [r for r in list(self.requests) if r.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(cond: Callable[[], Any], what: str, timeout: float = 45.0,
               proc_logs: Callable[[], str] | None = None) -> Any:
    """Poll `cond` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            extra = f"\n--- logs ---\n{proc_logs()}" if proc_logs else ""
            raise AssertionError(f"timed out waiting for {what}{extra}")
        time.sleep(0.05)


def require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is missing: run scripts/install-system-deps.sh "
                    f"(Debian package {package})")
    return path


class Alertmanager(ExternalProcess):
    """`prometheus-alertmanager` routing everything to one webhook, fast: group_wait and
    group_interval of one second, no clustering."""

    def __init__(self, tmp: Path, webhook_url: str) -> None:
        binary = require("prometheus-alertmanager", "prometheus-alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp / "alertmanager.yml"
        cfg.write_text(f"""\
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
""")
        (tmp / "am-data").mkdir(exist_ok=True)
        super().__init__([binary, f"--config.file={cfg}", f"--storage.path={tmp / 'am-data'}",
                          f"--web.listen-address=127.0.0.1:{self.port}",
                          "--cluster.listen-address="], tmp / "alertmanager.log",
                         f"{self.url}/-/ready", "alertmanager")

    def alerts(self) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = httpx.get(f"{self.url}/api/v2/alerts", timeout=5).json()
        return got


class Prometheus(ExternalProcess):
    """`prometheus` with its remote-write receiver and nothing to scrape."""

    def __init__(self, tmp: Path) -> None:
        binary = require("prometheus", "prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        super().__init__([binary, f"--config.file={cfg}",
                          f"--storage.tsdb.path={tmp / 'prom-data'}",
                          f"--web.listen-address=127.0.0.1:{self.port}",
                          "--web.enable-remote-write-receiver"], tmp / "prometheus.log",
                         f"{self.url}/-/ready", "prometheus")

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()["data"]["result"]
        return result
