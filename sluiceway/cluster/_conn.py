"""`NatsConn`: one NATS connection per process, on an event loop of its own thread.

nats-py is asyncio-only; the rest of the server calls from threads (and from its own
event loop), so every call goes through `run` (wait for a coroutine on the connection's
loop) or `submit` (a concurrent future). The first connection is retried for ever with
one log line per attempt ("NATS at ... unreachable, retrying in 1s"); `connected` is set
once it succeeds, and `/ready` answers 503 until then. Once connected, nats-py
reconnects by itself (logged on each change)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from sluiceway.cluster._config import ClusterConfig
from sluiceway.store import close_loop_thread

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = logging.getLogger("sluiceway.cluster")
T = TypeVar("T")
INSTALL_HINT = "cluster mode needs the nats-py package: pip install 'sluiceway[cluster]'"


class ClusterError(OSError):
    """NATS could not do what was asked (not connected, timed out, refused)."""


class NatsConn:
    def __init__(self, cfg: ClusterConfig, name: str = "sluiceway") -> None:
        try:
            import nats  # noqa: F401 - only to fail early with the hint
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        if not cfg.enabled:
            raise ValueError("cluster mode needs at least one NATS URL")
        self.cfg = cfg
        self._name = name
        self.connected = threading.Event()
        self._closing = False
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._on_connect: list[Callable[[], None]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="nats-conn")
        self._thread.start()
        self._connector = asyncio.run_coroutine_threadsafe(self._connect_forever(), self.loop)

    def __repr__(self) -> str:
        return f"NatsConn({','.join(self.cfg.urls)})"

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise ClusterError("not connected to NATS yet")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise ClusterError("not connected to NATS yet")
        return self._js

    def on_connect(self, fn: Callable[[], None]) -> None:
        """Run `fn` (on a thread of its own) once connected; at once if already."""
        self._on_connect.append(fn)
        if self.connected.is_set():
            threading.Thread(target=fn, daemon=True, name="nats-on-connect").start()

    def _options(self) -> dict[str, Any]:
        c = self.cfg
        out: dict[str, Any] = {
            k: v for k, v in (("user", c.user), ("password", c.password), ("token", c.token),
                              ("user_credentials", c.creds_file),
                              ("nkeys_seed", c.nkey_seed_file)) if v}
        if c.tls_ca_file or c.tls_cert_file:
            ctx = ssl.create_default_context(cafile=c.tls_ca_file or None)
            if c.tls_cert_file:
                ctx.load_cert_chain(c.tls_cert_file, c.tls_key_file or None)
            out["tls"] = ctx
        return out

    async def _connect_forever(self) -> None:
        import nats

        async def on_error(exc: Exception) -> None:
            log.debug("NATS: %s", exc)

        async def on_disconnected() -> None:
            if not self._closing:
                log.warning("NATS: disconnected, reconnecting")

        async def on_reconnected() -> None:
            log.warning("NATS: reconnected to %s", self._nc.connected_url if self._nc else "?")

        urls = list(self.cfg.urls)
        attempt = 0
        while not self._closing:
            attempt += 1
            try:
                nc = await asyncio.wait_for(nats.connect(
                    urls, name=self._name, connect_timeout=max(1, int(self.cfg.timeout)),
                    allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                    error_cb=on_error, disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected, **self._options()),
                    self.cfg.timeout + 1)
            except Exception as exc:  # noqa: BLE001 - every failure is retried, logged
                wait = min(5.0, 0.5 * attempt)
                log.warning("cluster: NATS at %s unreachable (%s); retrying in %.1fs, "
                            "/ready answers 503 until connected", ", ".join(urls),
                            str(exc) or type(exc).__name__, wait)
                await asyncio.sleep(wait)
                continue
            self._nc = nc
            self._js = nc.jetstream(timeout=self.cfg.timeout)
            log.info("cluster: connected to NATS at %s", nc.connected_url.netloc
                     if nc.connected_url else urls[0])
            self.connected.set()
            for fn in self._on_connect:
                threading.Thread(target=fn, daemon=True, name="nats-on-connect").start()
            return

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], what: str,
            timeout: float | None = None) -> T:
        """Run `coro` on the connection's loop and wait; NATS failures (and a wait past
        `timeout`, default twice the request timeout) become ClusterError."""
        import nats.errors
        import nats.js.errors

        fut = self.submit(coro)
        try:
            return fut.result(timeout if timeout is not None else 2 * self.cfg.timeout)
        except TimeoutError:
            fut.cancel()
            raise ClusterError(f"NATS: {what} timed out") from None
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise ClusterError(f"NATS: {what} failed: {type(exc).__name__}: {exc}") from exc

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self.connected.wait(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self._closing = True
        self._connector.cancel()
        if self._nc is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._nc.close(), self.loop).result(5)
        close_loop_thread(self.loop, self._thread, 5)
