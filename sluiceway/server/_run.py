"""Run the server process: bind the port ourselves so failures get a clear message."""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from sluiceway.server._config import Config
from sluiceway.server._ingest_pool import default_workers
from sluiceway.store import StoreError, lock_data_dir

log = logging.getLogger("sluiceway.server")


class StartupError(RuntimeError):
    """The server cannot start; the message is for the operator, not a traceback."""


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise StartupError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def bind(listen: str) -> socket.socket:
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"cannot listen on {listen}: the port is already in use "
                               "(another Sluiceway or Loki running?)") from None
        raise StartupError(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class _Server(uvicorn.Server):
    """uvicorn's server, but the first SIGINT/SIGTERM runs `before_stop` (on a thread,
    while the server still serves) and only then starts the graceful shutdown; a second
    signal acts at once, as in uvicorn (a second Ctrl-C forces the exit). `on_ready` runs
    once the app has started and the socket serves."""

    def __init__(self, config: uvicorn.Config, before_stop: Callable[[], None] | None,
                 on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._before_stop = before_stop
        self._on_ready = on_ready
        self._stopping: threading.Thread | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit and self._on_ready is not None:
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._before_stop is None or self._stopping is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._stopping = threading.Thread(target=self._stop_after, args=(sig,),
                                          name="before-stop", daemon=True)
        self._stopping.start()

    def _stop_after(self, sig: int) -> None:
        try:
            if self._before_stop is not None:
                self._before_stop()
        except Exception:
            log.exception("stopping before the server failed")
        finally:
            super().handle_exit(sig, None)


def serve(cfg: Config, before_stop: Callable[[], None] | None = None,
          on_ready: Callable[[], None] | None = None) -> None:
    """Run the server until SIGINT/SIGTERM. `before_stop` runs first, while the server
    still takes requests (`sluiceway up` stops its demo agent there); `on_ready` runs
    once the server is bound and serving (`sluiceway up` says so only then)."""
    setup_logging(cfg.server.log_level)
    # What the ingest workers run, imported before they are forked (its pages are then
    # shared with them); the web app and the query engine load after the fork, in this
    # process alone, so no worker carries them.
    from sluiceway.server import _distributor, _es_ingest, _otlp_ingest  # noqa: F401
    from sluiceway.server._ingest_pool import IngestPool
    from sluiceway.server._overrides import TenantLimits

    if cfg.loki_ignored:
        log.warning("config: these keys of a Loki config have no effect here: %s",
                    ", ".join(cfg.loki_ignored))
    split_listen(cfg.server.listen)  # a malformed address fails before anything starts
    limits = TenantLimits(cfg.limits, cfg.runtime_config)
    limits.load()  # a bad runtime config: ConfigError, exit 2 before anything starts
    workers = cfg.server.ingest_workers
    # Fork the workers first: no thread and no listening socket exists yet to inherit.
    pool = IngestPool(workers if workers is not None else default_workers())
    try:
        # The data dir is ours alone before anything in it is opened (and after the
        # fork: a worker holding the lock could outlive a killed server for a moment).
        lock = lock_data_dir(cfg.storage.data_dir)
    except StoreError as exc:
        pool.close()
        raise StartupError(str(exc)) from None
    try:
        sock = bind(cfg.server.listen)
    except StartupError:
        lock.close()
        pool.close()
        raise
    from sluiceway.server._app import (
        check_delete_delay,
        create_app,  # the query engine loads only to serve
        open_store,
    )
    from sluiceway.server._objects import ObjectStoreUnusable, open_objects

    if (short := check_delete_delay(cfg)) is not None:
        log.warning("config: %s", short)
    if cfg.cluster.enabled:
        # The store opens once NATS is reachable (retried, logged; /ready says 503).
        _run_server(cfg, create_app(cfg, None, pool, limits, lock=lock), sock, before_stop,
                    on_ready)
        return
    try:
        # Opened here, not in the ASGI lifespan, so a bad data dir or an object store
        # that cannot be used is a clear exit 2.
        objects = open_objects(cfg.storage)
    except ObjectStoreUnusable as exc:
        sock.close()
        lock.close()
        pool.close()
        raise StartupError(str(exc)) from None
    try:
        store = open_store(cfg, lock, objects, limits)
    except (StoreError, OSError) as exc:
        sock.close()
        pool.close()
        if objects is not None:
            objects.close()
        what = "" if isinstance(exc, StoreError) else f"chunks in {objects!r}: "
        raise StartupError(f"{what}{exc}") from None
    app = create_app(cfg, store, pool, limits)
    try:
        _run_server(cfg, app, sock, before_stop, on_ready)
    finally:
        if objects is not None:
            objects.close()


def _run_server(cfg: Config, app: Any, sock: socket.socket,
                before_stop: Callable[[], None] | None,
                on_ready: Callable[[], None] | None) -> None:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10, ws="websockets-sansio")
    server = (uvicorn.Server(config) if before_stop is None and on_ready is None
              else _Server(config, before_stop, on_ready))
    mode = (f", cluster mode (role {cfg.cluster.role}) on NATS {','.join(cfg.cluster.urls)}"
            if cfg.cluster.enabled else "")
    log.info("Sluiceway server listening on http://%s, data in %s%s", cfg.server.listen,
             cfg.storage.data_dir, mode)
    server.run(sockets=[sock])
    if not server.started:
        raise StartupError("server failed to start (see the log above)")
