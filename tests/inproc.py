"""The server in the test process, for tests where no process boundary is under test.

- `InProcessServer`: `create_app` over `httpx.ASGITransport`, synchronous (its own event
  loop), so hypothesis tests and plain tests call it like `httpx.Client`; bodies may be
  async generators (`CountingBody` counts what the server pulled).
- `inproc_server`: `create_app` served by uvicorn (the server's own websocket stack) on a
  real socket in a thread, for websockets, and for tests that reach into the server (its
  clock, its store) while talking to it over a socket.
- `ThreadServer`: the server as `sluiceway server` builds it (the same config loading and
  defaults, its data dir locked, uvicorn on a real socket) in a thread of the test process;
  the `server` fixture. For tests that talk HTTP to a server, with real clients or real agent
  processes, where the server's own process is not under test (signals, SIGKILL, its log,
  its exit code, ingest worker processes): those use `tests.procs.ServerProcess`. Starting
  one costs milliseconds instead of a process start (about a second of CPU).

The store is a real one in a temporary directory; ingest decoding runs in threads
(`IngestPool(0)`, the pool's own fallback) for `InProcessServer`."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from sluiceway.server import Config, load_config
from sluiceway.server._app import create_app, open_store
from sluiceway.server._config import LimitsSection
from sluiceway.server._context import ServerContext
from sluiceway.server._ingest_pool import IngestPool
from sluiceway.server._overrides import TenantLimits
from sluiceway.store import StoreConfig, lock_data_dir


def config_for(data_dir: Path, **overrides: Any) -> Config:
    """A config for tests: `overrides` are dotted keys (`server.auth_enabled`)."""
    base: dict[str, Any] = {"storage.data_dir": str(data_dir), "storage.wal_sync": "interval",
                            "storage.flush_on_shutdown": False,
                            "storage.compaction_enabled": False}
    return load_config(None, {**base, **overrides})


class InProcessServer:
    """`raise_exceptions`: an exception out of a route fails the caller with its own
    traceback (what the fuzz suite wants) instead of becoming a 500 answer."""

    def __init__(self, data_dir: Path, raise_exceptions: bool = False,
                 **overrides: Any) -> None:
        self.cfg = config_for(data_dir, **overrides)
        self.store = open_store(self.cfg)
        self.app = create_app(self.cfg, self.store, IngestPool(0))
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=raise_exceptions)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://sluiceway",
                                         timeout=60)

    @property
    def ctx(self) -> ServerContext:
        ctx: ServerContext = self.app.state.ctx
        return ctx

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kw))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        self.app.state.ctx.pool.close()
        self.store.close()


class CountingBody:
    """A chunked body (no Content-Length) of `total` bytes that counts the bytes the
    server pulled from it."""

    def __init__(self, piece: bytes, total: int) -> None:
        self.piece, self.total = piece, total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += len(self.piece)
            yield self.piece


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
    cfg = Config(storage=StoreConfig(data_dir=data_dir, flush_on_shutdown=False),
                 limits=LimitsSection(**limits))
    app = create_app(cfg, open_store(cfg))  # the store is closed by the lifespan
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


class ThreadServer:
    """`sluiceway server --data-dir DATA_DIR [-c CONFIG]` on a free port, in a thread.

    Quacks like `ServerProcess` where a test only talks to it: `url`, `port`, `data_dir`,
    `start()`, `stop()` (graceful: the final flush runs, as on SIGTERM). It has no `log()`:
    the server logs into the test's own log capture, and a test about the log uses a
    `ServerProcess`. Ingest decoding runs in threads (no worker processes are forked from
    the test process)."""

    def __init__(self, data_dir: Path, config: Path | None = None, port: int = 0,
                 overrides: dict[str, Any] | None = None) -> None:
        """`overrides`: dotted config keys, as `sluiceway server`'s flags set them."""
        self.data_dir = data_dir
        self.config = config
        self.overrides = overrides or {}
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ctx(self) -> ServerContext:
        assert self._server is not None
        ctx: ServerContext = self._server.config.app.state.ctx
        return ctx

    def start(self) -> ThreadServer:
        sock = self._sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart on its port
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        cfg = load_config(self.config, {
            "server.listen": f"127.0.0.1:{self.port}", "storage.data_dir": str(self.data_dir),
            "server.ingest_workers": 0, **self.overrides})
        # As `sluiceway.server._run.serve` builds it, minus the worker processes.
        limits = TenantLimits(cfg.limits, cfg.runtime_config)
        limits.load()
        store = open_store(cfg, lock_data_dir(cfg.storage.data_dir), None, limits)
        app = create_app(cfg, store, IngestPool(0), limits)
        server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on",
            timeout_graceful_shutdown=10, ws="websockets-sansio"))
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name=f"server-{self.port}", daemon=True)
        self._thread.start()
        wait_for(lambda: server.started or not self._thread_alive(), "the server to start")
        if not server.started:
            self.stop()
            raise RuntimeError("the in-thread server failed to start (see the log)")
        return self

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, graceful: bool = True) -> None:
        """`graceful=False`: do not wait for clients to close their connections (the
        store is still closed, as a test's data is throwaway)."""
        if self._server is None or self._thread is None:
            return
        self._server.force_exit = not graceful
        self._server.should_exit = True
        self._thread.join(30)
        if self._thread.is_alive():  # a connection the client never closed
            self._server.force_exit = True
            self._thread.join(30)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None


def wait_for(cond: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
