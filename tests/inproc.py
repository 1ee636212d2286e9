"""The server app in this process (`create_app` over `httpx.ASGITransport`), for tests
where no process boundary is under test: bad-input answers and the fuzz suite.

`InProcessServer` is synchronous (its own event loop), so hypothesis tests and plain
tests call it like `httpx.Client`. The store is a real one in a temporary directory;
ingest decoding runs in threads (`IngestPool(0)`), which is the pool's own fallback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from sluiceway.server import Config, load_config
from sluiceway.server._app import create_app, store_config
from sluiceway.server._ingest_pool import IngestPool
from sluiceway.store import Store


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
        self.store = Store(store_config(self.cfg))
        self.app = create_app(self.cfg, self.store, IngestPool(0))
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=raise_exceptions)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://sluiceway",
                                         timeout=60)

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
