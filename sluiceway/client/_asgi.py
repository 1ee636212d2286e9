"""ASGI middleware: a request id on every line of a request, and one access line.

Pure ASGI (no BaseHTTPMiddleware), so streaming responses and background tasks keep
working and the per-request cost is a contextvar set and reset. It also watches the
lifespan: when the app has shut down, the client's records are flushed (and the pipeline
stopped) before the server is told so, before the server may end the process.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sluiceway.client._context import RequestContext, context_var
from sluiceway.client._exit import drain_for_exit, revive_after_lifespan
from sluiceway.client._logger import Logger, format_exc

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_VALID_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestContextMiddleware:
    """Assigns or propagates `X-Request-ID`, binds request_id, method, path, route and
    client to every record logged while the request runs, echoes the id in the
    response, and logs one access line (status, duration_ms) per request.

    `app.add_middleware(RequestContextMiddleware)` in FastAPI/Starlette, or wrap any
    ASGI app. An incoming id is kept only if it looks like an id (1-128 safe chars).

    On the lifespan shutdown it flushes the client within `shutdown_timeout` (see
    `configure`) before passing the app's `lifespan.shutdown.complete` on.
    """

    def __init__(self, app: ASGIApp, *, header: str = "X-Request-ID",
                 access_log: bool = True, logger: str = "access",
                 skip_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.header_name = header.encode("latin-1")
        self.access_log = access_log
        self.log = Logger(logger)
        self.skip_paths = frozenset(skip_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, _watch_lifespan(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self._request_id(scope)
        client = scope.get("client")
        fields = {"request_id": rid, "method": scope.get("method", ""),
                  "path": scope.get("path", ""),
                  "client": f"{client[0]}:{client[1]}" if client else None}
        token = context_var.set(RequestContext({**context_var.get(), **fields}, scope))
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((self.header_name, rid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        exc_text: str | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            status, exc_text = 500, format_exc(exc)
            raise
        finally:
            if self.access_log and scope.get("path") not in self.skip_paths:
                self._access(scope, status, start, exc_text)
            context_var.reset(token)

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope.get("headers", ()):
            if name == self.header:
                rid = bytes(value).decode("latin-1")
                if _VALID_ID.fullmatch(rid):
                    return rid
                break
        # A request id needs uniqueness, not secrecy: 128 random bits from the PRNG
        # cost a fraction of uuid4's urandom syscall on every request.
        return f"{random.getrandbits(128):032x}"

    def _access(self, scope: Scope, status: int, start: float, exc: str | None) -> None:
        ms = round((time.perf_counter() - start) * 1000, 3)
        msg = f"{scope.get('method', '')} {scope.get('path', '')} {status}"
        if exc is not None:
            self.log.error(msg, status=status, duration_ms=ms, exc=exc)
        elif status >= 500:
            self.log.error(msg, status=status, duration_ms=ms)
        else:
            self.log.info(msg, status=status, duration_ms=ms)


def _watch_lifespan(send: Send) -> Send:
    async def send_after_flush(message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            revive_after_lifespan()
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await _off_loop(drain_for_exit)
        await send(message)
    return send_after_flush


async def _off_loop(fn: Callable[[], None]) -> None:
    """Run a blocking call off the event loop when there is an asyncio one (the server's
    other shutdown work goes on meanwhile), else in place."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn()
        return
    await asyncio.to_thread(fn)
