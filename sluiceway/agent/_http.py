"""The agent's own small HTTP endpoint: /metrics (Prometheus), /status (JSON), /ready, and
the pipeline view (`_view.PipelineView`: its page, its data, reporters' heartbeats)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from sluiceway.agent._view import PipelineView

log = logging.getLogger("sluiceway.agent")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {listen!r}")
    return host or "127.0.0.1", int(port)


class StatusServer:
    """Runs in a daemon thread; `status()` and `metrics()` are built on every request."""

    def __init__(self, listen: str, status: Callable[[], dict[str, Any]],
                 metrics: Callable[[], bytes], view: PipelineView | None = None) -> None:
        get_status, get_metrics = status, metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, get_metrics(), METRICS_TYPE)
                elif path == "/status":
                    self._send(200, orjson.dumps(get_status(), option=orjson.OPT_INDENT_2),
                               "application/json")
                elif path == "/ready":
                    self._send(200, b"ready\n", "text/plain")
                elif view is not None and (answer := view.get(path)) is not None:
                    self._send(*answer)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                length = self.headers.get("Content-Length", "")
                if view is None:
                    self._send(404, b"not found\n", "text/plain")
                elif not length.isdigit():
                    self._send(411, b"a Content-Length is required\n", "text/plain")
                elif int(length) > view.max_body:
                    self.close_connection = True  # the body is not read
                    self._send(413, f"body larger than {view.max_body} bytes\n".encode(),
                               "text/plain")
                else:
                    self._send(*view.receive(self.path.split("?", 1)[0],
                                          self.rfile.read(int(length))))

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # scrapes every few seconds would drown the agent's own log

        self.httpd = ThreadingHTTPServer(parse_listen(listen), Handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.address = f"{host!s}:{port}"
        # `stop` waits for the loop to notice, up to one poll: short, so it does not eat
        # into the margin after the shutdown deadline.
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,),
                                        daemon=True, name="agent-http")

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("agent status on http://%s (/status, /metrics)", self.address)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
