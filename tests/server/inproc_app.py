"""The server app in this process (`create_app` over `httpx.ASGITransport`) with a real
store in a temporary directory, for tests where no process boundary is under test. Request
bodies can be async generators: the tests count how much of a body the server pulled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from sluiceway.server import load_config
from sluiceway.server._app import create_app, store_config
from sluiceway.server._context import ServerContext
from sluiceway.server._ingest_pool import IngestPool
from sluiceway.store import Store


class InProcessApp:
    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        base = {"storage.data_dir": str(data_dir), "storage.wal_sync": "interval",
                "storage.flush_on_shutdown": False, "storage.compaction_enabled": False}
        self.cfg = load_config(None, {**base, **overrides})
        self.store = Store(store_config(self.cfg))
        self.app = create_app(self.cfg, self.store, IngestPool(0))
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
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
