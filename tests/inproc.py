"""The server in the test process: `create_app` over a real store in a temp dir, served by
uvicorn (the server's own websocket stack) on a real socket in a thread. For tests that
need no process boundary but want to reach into the server (its clock, its store)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from sluiceway.server._app import create_app, store_config
from sluiceway.server._config import Config, LimitsSection, StorageSection
from sluiceway.server._context import ServerContext
from sluiceway.store import Store


@dataclass
class InProcServer:
    url: str
    port: int
    ctx: ServerContext
    http: httpx.Client

    def ws_url(self, params: dict[str, str]) -> str:
        return f"ws://127.0.0.1:{self.port}/loki/api/v1/tail?" + str(httpx.QueryParams(params))

    def push(self, labels: dict[str, str], lines: list[str], start_ns: int | None = None,
             tenant: str | None = None) -> list[int]:
        """One push of `lines` into one stream, 1 ns apart; returns their timestamps."""
        t0 = time.time_ns() - 10**9 if start_ns is None else start_ns
        ts = [t0 + i for i in range(len(lines))]
        body = orjson.dumps({"streams": [{"stream": labels, "values": [
            [str(t), line] for t, line in zip(ts, lines, strict=True)]}]})
        headers = {"Content-Type": "application/json"}
        if tenant is not None:
            headers["X-Scope-OrgID"] = tenant
        r = self.http.post("/loki/api/v1/push", content=body, headers=headers)
        assert r.status_code == 204, r.text
        return ts

    def metric(self, name: str, labels: str = "") -> float:
        """A value from /metrics (0 when the series is absent)."""
        want = f"{name}{{{labels}}}" if labels else name
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0


@contextmanager
def inproc_server(data_dir: Path, **limits: Any) -> Iterator[InProcServer]:
    cfg = Config(storage=StorageSection(data_dir=data_dir, flush_on_shutdown=False),
                 limits=LimitsSection(**limits))
    app = create_app(cfg, Store(store_config(cfg)))  # the store is closed by the lifespan
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the server to start")
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            yield InProcServer(url, port, app.state.ctx, http)
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def wait_for(cond: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
