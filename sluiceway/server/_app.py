"""The HTTP app: one `ServerContext`, the route modules, error mapping, and the UI."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from sluiceway import __version__
from sluiceway.cluster import ClusterCollector, ClusterError, ClusterNode, ClusterOps
from sluiceway.durable import DirLock
from sluiceway.logql import (
    LogSource,
    QueryError,
    QueryParams,
    QueryTimeout,
    ResultsCache,
    block_levels,
)
from sluiceway.model import EntryBlock, PipelineRegistry
from sluiceway.patterns import MinerConfig, PatternService
from sluiceway.server import (
    _routes_delete,
    _routes_drilldown,
    _routes_es,
    _routes_index,
    _routes_ledger,
    _routes_ops,
    _routes_otlp,
    _routes_push,
    _routes_query,
    _routes_rules,
    _routes_tail,
)
from sluiceway.server._config import Config, LimitsSection
from sluiceway.server._context import UI_DIR, NotReady, ServerContext, bad
from sluiceway.server._deletion import compile_delete, stream_retention, stream_rules
from sluiceway.server._inflight import InflightPushes
from sluiceway.server._ingest_pool import IngestPool
from sluiceway.server._ledger import Ledger
from sluiceway.server._memory import MemoryCollector
from sluiceway.server._metrics import RequestMetricsMiddleware, ServerMetrics
from sluiceway.server._objects import open_objects
from sluiceway.server._overrides import TenantLimits
from sluiceway.server._params import ParamError
from sluiceway.server._ratelimit import IngestionRateLimiter, StreamRateLimiter
from sluiceway.server._routes_query import split_source
from sluiceway.server._ruler import RulerCollector, build_ruler, ruler_view
from sluiceway.server._streamlimit import StreamLimiter
from sluiceway.server._tail import TailHub
from sluiceway.store import HeldBytes, ObjectStore, Store, StoreConfig, decode_record
from sluiceway.wire import BodyTooLarge


def open_store(cfg: Config, lock: DirLock | None = None, objects: ObjectStore | None = None,
               limits: TenantLimits | None = None) -> Store:
    """The store of `cfg`: its `storage` and `compactor` sections are the store's own
    models and go in as they are; the limits give each tenant's unordered window and
    retention (`cfg.limits` for all when `limits` is None)."""
    def lim(tenant: str) -> LimitsSection:
        return limits.get(tenant) if limits is not None else cfg.limits

    return Store(cfg.storage, lock, objects, compactor=cfg.compactor,
                 unordered_window_for=lambda t: lim(t).unordered_window,
                 retention_for=lambda t: cfg.retention_period(lim(t)))


def cluster_store_config(cfg: Config) -> StoreConfig:
    """Cluster mode: the local store's log is a cache of JetStream (the durable log), so
    it is synced on an interval and started empty; compaction runs only on the member
    holding the compactor lease (`ClusterNode`)."""
    return cfg.storage.model_copy(update={"wal_sync": "interval",
                                          "compaction_enabled": False})


def _cluster_node(cfg: Config, lock: DirLock | None,
                  unordered_window_for: Callable[[str], float]) -> ClusterNode:
    """This process's part of the cluster; its store is opened once NATS is reachable."""
    def open_store(objects: ObjectStore) -> Store:
        data = cfg.storage.data_dir
        # Nothing the cluster needs lives only here: what the last run's local log held
        # is in JetStream, replayed by whoever owns its partitions now.
        shutil.rmtree(data / "wal", ignore_errors=True)
        (data / "checkpoint.json").unlink(missing_ok=True)
        return Store(cluster_store_config(cfg), lock, objects=objects,
                     compactor=cfg.compactor, unordered_window_for=unordered_window_for)

    def open_explicit() -> ObjectStore | None:
        # storage.backend s3 or nats: that one; filesystem: the cluster's own bucket.
        return open_objects(cfg.storage) if cfg.storage.backend != "filesystem" else None

    return ClusterNode(cfg.cluster, cfg.server.listen, __version__, open_store,
                       open_explicit, cfg.compactor.compaction_interval
                       or cfg.storage.compaction_interval)


def cluster_ops(ctx: ServerContext, node: ClusterNode,
                loop: asyncio.AbstractEventLoop) -> ClusterOps:
    """The node's fan-out, tail, shared heartbeats and status, once it is ready: splits
    asked of this node read its cluster source (scoped as the query's own), with this
    node's threads."""
    cfg = ctx.cfg

    def source_of(params: QueryParams, floor: int | None) -> LogSource:
        return split_source(ctx, params, floor)

    return ClusterOps(node, ctx.pipeline, ctx.hub.publish, loop, source_of,
                      lambda: ctx.exec_options(cfg.limits), cfg.server.heartbeat_forget_after,
                      rule_views=ruler_view(ctx) if ctx.ruler is not None else None)


def check_delete_delay(cfg: Config) -> str | None:
    """A warning when `retention_delete_delay` is not longer than the longest query plus
    `index_sync_period`: a reader may then find a chunk gone (counted, and said in the
    answer's warnings), though its lines are in the chunk that replaced it; and the orphan
    sweep may take a chunk another server wrote for one it has not named yet (a flush
    between its chunk and its index object)."""
    need = cfg.limits.query_timeout + cfg.storage.index_sync_period
    if cfg.compactor.retention_delete_delay > need:
        return None
    return (f"compactor.retention_delete_delay ({cfg.compactor.retention_delete_delay:g}s) "
            f"is not longer than limits.query_timeout plus storage.index_sync_period "
            f"({need:g}s): a query may find a replaced chunk deleted under it, and the "
            f"orphan sweep may delete a chunk another server wrote before its index object")


def open_ledger(cfg: Config, store: Store) -> Ledger:
    """The ledger lives beside the store, in `<data_dir>/ledger/`."""
    return Ledger(store.root / "ledger", sync=cfg.storage.wal_sync == "always",
                  max_sources=cfg.server.ledger_max_sources,
                  stale_factor=cfg.server.heartbeat_stale_factor)


def pattern_service(ctx: ServerContext, in_process: bool) -> PatternService | None:
    """The pattern ingester of `pattern_ingester` (None when disabled)."""
    # One miner for every tenant: the config's limits (not a tenant's runtime overrides).
    pi, lim = ctx.cfg.pattern_ingester, ctx.cfg.limits
    if not pi.enabled:
        return None
    cfg = MinerConfig(pi, tuple(lim.tokenizable_json_fields()), ctx.level_rules(lim))
    return PatternService(cfg, decode_record, in_process, lim.query_timeout)


def _errors(app: FastAPI) -> None:
    """Bad input is a 4xx with Loki's text, never a 500."""
    async def as_400(_r: Request, exc: Exception) -> Response:
        return bad(str(exc))

    async def no_org(_r: Request, _exc: Exception) -> Response:
        return bad("no org id", 401)

    async def timed_out(_r: Request, exc: Exception) -> Response:
        return bad(str(exc), 504)

    async def too_large(_r: Request, exc: Exception) -> Response:
        return bad(str(exc), 413)

    async def not_ready(_r: Request, exc: Exception) -> Response:
        return bad(f"not ready: {exc}", 503)

    async def cluster_unavailable(_r: Request, exc: Exception) -> Response:
        # NATS did not answer in time (a NATS node lost, a failover under way): the
        # client asks again, as for any 503; never a 500.
        return bad(f"cluster unavailable, try again: {exc}", 503)

    app.add_exception_handler(ParamError, as_400)
    app.add_exception_handler(QueryError, as_400)
    app.add_exception_handler(PermissionError, no_org)
    app.add_exception_handler(QueryTimeout, timed_out)
    app.add_exception_handler(BodyTooLarge, too_large)  # a POST form on a read
    app.add_exception_handler(NotReady, not_ready)  # cluster mode before NATS answered
    app.add_exception_handler(ClusterError, cluster_unavailable)


def create_app(cfg: Config, store: Store | None = None, pool: IngestPool | None = None,
               limits: TenantLimits | None = None, lock: DirLock | None = None) -> FastAPI:
    """Build the app; the store is opened at startup unless one is given. `limits`: the
    per-tenant limits already loaded (else read here; ConfigError when they cannot be).
    In cluster mode (`cluster.urls`) the store is opened once NATS is reachable, and
    `lock` is the data dir's lock the caller took."""
    if limits is None:
        limits = TenantLimits(cfg.limits, cfg.runtime_config)
        limits.load()
    pipeline = PipelineRegistry(cfg.server.heartbeat_stale_factor,
                                cfg.server.heartbeat_max_reporters,
                                cfg.server.heartbeat_forget_after)
    hub = TailHub(limits.get)
    results = (ResultsCache(cfg.server.results_cache_size)
               if cfg.server.results_cache_size else None)
    ctx = ServerContext(cfg, ServerMetrics(), pipeline, hub, pool or IngestPool(0),
                        IngestionRateLimiter(), StreamLimiter(), StreamRateLimiter(), limits,
                        store, results_cache=results,
                        inflight=InflightPushes(HeldBytes(cfg.server.max_inflight_push_bytes)))
    ctx.metrics.bind_tail(hub)

    def retention_for(tenant: str) -> float:
        return cfg.retention_period(limits.get(tenant))

    def stream_retention_for(tenant: str, labels: dict[str, str]) -> float:
        lim = limits.get(tenant)
        return stream_retention(stream_rules(lim), labels, cfg.retention_period(lim))

    def wire(st: Store) -> None:
        """What the store asks the server: retention per tenant and stream, how blocks
        are labelled, and how delete requests are applied (`deletion_mode` per tenant)."""
        st.retention_for = retention_for
        # Loki's retention_stream applies with compactor.retention_enabled only.
        st.stream_retention_for = stream_retention_for if cfg.compactor.retention_enabled \
            else None
        st.block_labels = block_labels
        st.deletes.compile = compile_delete
        st.deletes.mode_for = lambda tenant: limits.get(tenant).deletion_mode

    def unordered_window_for(tenant: str) -> float:
        return limits.get(tenant).unordered_window

    def block_labels(tenant: str, block: EntryBlock) -> tuple[str, str | list[str]] | None:
        """The compactor keeps each block's lines counted by `detected_level` under the
        tenant's rules then (a count over them needs no lines while the rules stay)."""
        rules = ctx.level_rules(limits.get(tenant))
        return None if rules is None else (rules.key, block_levels(rules, block))

    if store is not None:
        wire(store)
        ctx.opened_ledger = open_ledger(cfg, store)
        ctx.metrics.bind_ledger(ctx.ledger)
        store.unordered_window_for = unordered_window_for

    if cfg.cluster.enabled and store is None:
        ctx.cluster = _cluster_node(cfg, lock, unordered_window_for)
        ctx.metrics.bind_cluster(ctx.cluster)
    ctx.ruler = build_ruler(cfg, ctx)  # cluster mode: its rules and state in KV
    ctx.metrics.registry.register(RulerCollector(ctx.ruler))

    async def opened() -> None:
        """Everything that needs the store, once it is open."""
        ctx.metrics.bind_store(ctx.store)
        ctx.metrics.registry.register(MemoryCollector(ctx))
        if ctx.opened_ledger is None:
            ctx.opened_ledger = await run_in_threadpool(open_ledger, cfg, ctx.store)
        ctx.metrics.bind_ledger(ctx.ledger)
        # A process of its own beside a real server's ingest workers; a thread in an app
        # built in-process (tests), where spawning processes would cost more than mining.
        ctx.patterns = await run_in_threadpool(pattern_service, ctx, ctx.pool.workers == 0)
        ctx.metrics.bind_patterns(ctx)
        if ctx.ruler is not None:
            await ctx.ruler.start()

    async def cluster_start(node: ClusterNode) -> None:
        """Cluster mode: the store opens once NATS is reachable (meanwhile /ready and
        the API answer 503)."""
        await run_in_threadpool(node.start)
        if node.store is None:
            return  # stopped before NATS was reachable
        wire(node.store)
        ctx.opened_store = node.store
        if ctx.ruler is not None:  # one member per rule group
            ctx.ruler.shard = node.rule_shard
        await opened()
        ctx.cluster_ops = await run_in_threadpool(cluster_ops, ctx, node,
                                                  asyncio.get_running_loop())
        ctx.rate.distributors = ctx.cluster_ops.distributors
        ctx.metrics.registry.register(ClusterCollector(ctx.cluster_ops))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        starting: asyncio.Task[None] | None = None
        if ctx.cluster is not None:
            starting = asyncio.create_task(cluster_start(ctx.cluster))
        else:
            if ctx.opened_store is None:
                ctx.opened_store = await run_in_threadpool(open_store, cfg, None, None, limits)
                wire(ctx.store)
            await opened()
        watcher = asyncio.create_task(limits.watch()) if limits.files else None
        yield
        if ctx.cluster is not None:
            ctx.cluster.stopping()
            if starting is not None:
                await starting
            if ctx.cluster_ops is not None:
                await run_in_threadpool(ctx.cluster_ops.close)
            await run_in_threadpool(ctx.cluster.close_roles)
        if ctx.ruler is not None and ctx.opened_store is not None:
            await ctx.ruler.stop()
        if watcher is not None:
            watcher.cancel()
        ctx.pool.close()
        if ctx.opened_ledger is not None:
            await run_in_threadpool(ctx.ledger.close)
        if ctx.patterns is not None:
            await run_in_threadpool(ctx.patterns.close)
        if ctx.opened_store is not None:
            await run_in_threadpool(ctx.store.close)
        elif lock is not None:
            lock.close()
        if ctx.cluster is not None:
            await run_in_threadpool(ctx.cluster.close)

    app = FastAPI(title="Sluiceway", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.ctx = ctx
    _errors(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=ctx.metrics)
    for module in (_routes_push, _routes_otlp, _routes_es, _routes_query, _routes_index,
                   _routes_drilldown, _routes_tail, _routes_ops, _routes_ledger,
                   _routes_delete):
        app.include_router(module.router)
    app.include_router(_routes_rules.views)
    if cfg.ruler.enable_api:
        app.include_router(_routes_rules.rules_api)
    if UI_DIR.is_dir():
        # Last, so every API route wins; `html=True` serves index.html at `/`.
        app.mount("/", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
