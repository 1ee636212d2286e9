"""`loki_push` input: the agent takes Loki pushes itself (Promtail's `loki_push_api`).

`POST /loki/api/v1/push` (JSON or protobuf, gzip/deflate), `POST /promtail/api/v1/raw`
(one line per line of the body) and `GET /ready`. Each stream's labels, with the input's
`labels`, go through `relabel_configs` (a stream whose labels are dropped is refused
nothing: it is skipped), then the pipeline. The answer is 204 once the lines are in the
agent's queue; while the queue blocks, so does the answer (the sender slows down).
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sluiceway.agent._config import LokiPushInput
from sluiceway.agent._http import parse_listen
from sluiceway.agent._inputs import LineInput
from sluiceway.agent._relabel import Relabeler, public
from sluiceway.agent._stats import Stats
from sluiceway.agent._tail import Emit
from sluiceway.wire import BodyTooLarge, WireError, decode_push

log = logging.getLogger("sluiceway.agent")


class PushReceiver(LineInput):
    def __init__(self, cfg: LokiPushInput, emit: Emit, stats: Stats,
                 stop: threading.Event) -> None:
        super().__init__({}, list(cfg.pipeline), emit, stats, stop)
        self.cfg = cfg
        self.relabel = Relabeler(cfg.relabel_configs)
        self._lock = threading.Lock()  # one pipeline, many request threads
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?", 1)[0] == "/ready":
                    self._send(200, b"ready\n")
                else:
                    self._send(404, b"not found\n")

            def do_POST(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                size = int(self.headers.get("Content-Length") or 0)
                if size > cfg.max_body_size:
                    self._send(413, b"request body too large\n")
                    return
                body = self.rfile.read(size)
                try:
                    if path == "/loki/api/v1/push":
                        receiver.push(body, self.headers.get("Content-Type") or "",
                                      self.headers.get("Content-Encoding"))
                    elif path == "/promtail/api/v1/raw":
                        receiver.raw(body)
                    else:
                        self._send(404, b"not found\n")
                        return
                except BodyTooLarge as exc:
                    self._send(413, f"{exc}\n".encode())
                    return
                except WireError as exc:
                    self._send(400, f"{exc}\n".encode())
                    return
                self._send(204, b"")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(parse_listen(cfg.listen), Handler)
        self.httpd.daemon_threads = True

    def push(self, body: bytes, ctype: str, encoding: str | None) -> None:
        now = time.time_ns()
        streams = decode_push(body, ctype, encoding)
        lines: list[str] = []
        ts: list[int] = []
        labels: list[dict[str, str] | None] = []
        for sb in streams:
            got = self.relabel.apply({**self.cfg.labels, **sb.labels}) if self.relabel \
                else {**self.cfg.labels, **sb.labels}
            if got is None:
                continue
            lab = public(got)
            lines += sb.lines
            ts += sb.ts if self.cfg.use_incoming_timestamp else \
                list(range(now, now + len(sb.lines)))
            labels += [lab] * len(sb.lines)
            now += len(sb.lines)
        if lines:
            with self._lock:
                self.deliver(lines, ts, labels)

    def raw(self, body: bytes) -> None:
        text = body.decode("utf-8", "replace")
        lines = [line for line in text.split("\n") if line]
        if lines:
            lab = public(self.relabel.apply(dict(self.cfg.labels)) or {}) if self.relabel \
                else dict(self.cfg.labels)
            with self._lock:
                self.deliver(lines, None, [lab] * len(lines))

    def run(self) -> None:
        t = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True,
                             name="agent-push-input")
        t.start()
        log.info("Loki push input listening on http://%s:%d", *self.httpd.server_address[:2])
        while not self.stop.wait(0.25):
            if self.pipeline.stateful:
                with self._lock:
                    self.deliver([])
        self.httpd.shutdown()
        self.httpd.server_close()
