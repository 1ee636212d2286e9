"""Real parts for client tests: recording/hanging sinks and a small real HTTP push server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sluiceway.wire import decode_push


class MemorySink:
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.records: list[dict[str, Any]] = []
        self.calls = 0

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        self.calls += 1
        self.records.extend(records)


class GateSink(MemorySink):
    """Hangs inside write_batch until `release()`: a sink stuck on a dead socket."""

    def __init__(self, name: str = "gate") -> None:
        super().__init__(name)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        self.entered.set()
        self.gate.wait()
        super().write_batch(records)

    def release(self) -> None:
        self.gate.set()


class PushServer:
    """A real HTTP server on 127.0.0.1 that decodes Loki pushes; `respond` decides the
    status (and headers) of each request — or `judge`, given the push's lines, decides
    status, headers and body text — and `stall` makes it hang before answering."""

    def __init__(self, respond: Callable[[int], tuple[int, dict[str, str]]] | None = None,
                 stall: float = 0.0,
                 judge: Callable[[list[str]], tuple[int, dict[str, str], str]] | None = None
                 ) -> None:
        self.lines: list[str] = []
        self.other_paths: list[str] = []
        self.requests: list[float] = []
        self.respond = respond or (lambda i: (204, {}))
        self.stall = stall
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/loki/api/v1/push":  # a plain Loki: no heartbeat page
                    outer.other_paths.append(self.path)
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                n = len(outer.requests)
                outer.requests.append(time.monotonic())
                if outer.stall:
                    time.sleep(outer.stall)
                lines = [ln for b in decode_push(body, self.headers.get("Content-Type", ""),
                                                 self.headers.get("Content-Encoding", ""))
                         for ln in b.lines]
                text = ""
                if judge is not None:
                    status, headers, text = judge(lines)
                else:
                    status, headers = outer.respond(n)
                if status < 300:
                    outer.lines.extend(lines)
                data = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def call_times_us(fn: Callable[[int], None], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t0) / 1000)
    return sorted(out)


def pct(sorted_us: list[float], q: float) -> float:
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * q))]
