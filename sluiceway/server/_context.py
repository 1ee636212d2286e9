"""What every route needs: config, store, metrics, tail hub, ingest pool; and HTTP helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from sluiceway.cluster import ClusterError, ClusterNode, ClusterOps
from sluiceway.logql import (
    DEFAULT_MAX_LINE_SIZE,
    Deadline,
    ExecOptions,
    LevelRules,
    LogSource,
    ResultsCache,
)
from sluiceway.model import PipelineRegistry
from sluiceway.patterns import PatternService
from sluiceway.ruler import Ruler
from sluiceway.server._body import read_body
from sluiceway.server._config import Config, LimitsSection
from sluiceway.server._inflight import InflightPushes
from sluiceway.server._ingest_pool import IngestPool
from sluiceway.server._ledger import Ledger
from sluiceway.server._metrics import ServerMetrics
from sluiceway.server._overrides import TenantLimits
from sluiceway.server._querier import StoreSource
from sluiceway.server._ratelimit import IngestionRateLimiter, StreamRateLimiter
from sluiceway.server._streamlimit import StreamLimiter
from sluiceway.server._tail import TailHub
from sluiceway.server._tenants import parse_tenants
from sluiceway.store import HeldBytes, Store

UI_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"
MAX_FORM_SIZE = 10 << 20  # Go's limit on a url-encoded body in `http.Request.ParseForm`


class NotReady(RuntimeError):
    """The store (or, in cluster mode, the connection to NATS) is not open yet: 503."""


@dataclass(slots=True)
class ServerContext:
    cfg: Config
    metrics: ServerMetrics
    pipeline: PipelineRegistry
    hub: TailHub
    pool: IngestPool
    rate: IngestionRateLimiter
    streams: StreamLimiter
    stream_rate: StreamRateLimiter
    overrides: TenantLimits
    opened_store: Store | None = None
    opened_ledger: Ledger | None = None
    ruler: Ruler | None = None
    results_cache: ResultsCache | None = None  # results of closed query splits
    clock: Callable[[], float] = time.monotonic  # for query deadlines (tests set their own)
    patterns: PatternService | None = None  # the pattern ingester, while it runs
    cluster: ClusterNode | None = None  # cluster mode: this process's part of it
    cluster_ops: ClusterOps | None = None  # and its fan-out, tail, heartbeats, status
    # Push bodies read and their records, until answered (`server.max_inflight_push_bytes`).
    inflight: InflightPushes = field(default_factory=lambda: InflightPushes(HeldBytes()))

    def limits_for(self, tenant: str) -> LimitsSection:
        """The tenant's limits: the config's, with its runtime overrides."""
        return self.overrides.get(tenant)

    def read_limits(self, tenants: list[str]) -> LimitsSection:
        """The limits of a read over `tenants`, as Loki combines them: the smallest
        non-zero of each size and length limit, the longest timeout."""
        first = self.limits_for(tenants[0])
        if len(tenants) == 1:
            return first
        each = [self.limits_for(t) for t in tenants]

        def smallest(name: str) -> float:
            values = [v for x in each if (v := getattr(x, name))]
            return min(values) if values else 0

        names = ("max_entries_limit_per_query", "max_query_length", "max_query_lookback",
                 "max_query_series", "max_line_size")
        update: dict[str, float] = {n: smallest(n) for n in names}
        update["query_timeout"] = max(x.query_timeout for x in each)
        return first.model_copy(update=update)

    @property
    def ledger(self) -> Ledger:
        if self.opened_ledger is None:
            raise NotReady("the ledger is not open yet")
        return self.opened_ledger

    @property
    def store(self) -> Store:
        if self.opened_store is None:
            raise NotReady("the store is not open yet")
        return self.opened_store

    def source(self, options: ExecOptions | None = None,
               on_block: Callable[[], None] | None = None) -> LogSource:
        """The read source of a request: the store's (`StoreSource`); in cluster mode
        merged with the other ingesters' unflushed data (`ClusterSource`)."""
        local = StoreSource(self.store, options, on_block)
        if self.cluster is None:
            return local
        try:
            return self.cluster.source(local)
        except ClusterError as exc:
            raise NotReady(str(exc)) from None

    @staticmethod
    def template_cap(limits: LimitsSection) -> int:
        """Bytes a query's template may write: `max_line_size` (Loki's default when 0)."""
        return limits.max_line_size or DEFAULT_MAX_LINE_SIZE

    @staticmethod
    def level_rules(limits: LimitsSection) -> LevelRules | None:
        """How lines get `detected_level` under `limits` (None: `discover_log_levels` is
        off, or structured metadata is not allowed, as in Loki)."""
        if not (limits.discover_log_levels and limits.allow_structured_metadata):
            return None
        return LevelRules(tuple(limits.log_level_fields), limits.log_level_from_json_max_depth)

    def deadline(self, limits: LimitsSection) -> Deadline | None:
        """When a query starting now must stop (`query_timeout`; 0: never)."""
        timeout = limits.query_timeout
        return Deadline(timeout, self.clock) if timeout else None

    def exec_options(self, limits: LimitsSection) -> ExecOptions:
        """How a query's work runs, from the limits (Loki's names): threads (capped by the
        cores), time splits, bytes it may read, the results cache."""
        return ExecOptions(
            parallelism=min(limits.max_query_parallelism, os.cpu_count() or 1),
            split_ns=int(limits.split_queries_by_interval * 1e9),
            max_bytes_read=int(limits.max_query_bytes_read), cache=self.results_cache,
            cache_freshness_ns=int(limits.max_cache_freshness_per_query * 1e9))

    def tenants(self, headers: Headers, allow_many: bool) -> list[str]:
        """Tenant ids from X-Scope-OrgID, or the default tenant. `allow_many` marks a read:
        `a|b` names several tenants there when multi-tenant queries are enabled."""
        return self.tenant_ids(headers.get("x-scope-orgid"), allow_many)

    def tenant_ids(self, value: str | None, allow_many: bool) -> list[str]:
        return parse_tenants(value, self.cfg.server.default_tenant,
                             self.cfg.server.auth_enabled,
                             allow_many and self.cfg.querier.multi_tenant_queries_enabled)


def ctx_of(conn: HTTPConnection) -> ServerContext:
    ctx: ServerContext = conn.app.state.ctx
    return ctx


class JSONResponse(Response):
    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def bad(msg: str, status: int = 400) -> PlainTextResponse:
    """Loki answers errors as text/plain with the message."""
    return PlainTextResponse(msg if msg.endswith("\n") else msg + "\n", status_code=status)


async def form_of(request: Request) -> list[tuple[str, str]]:
    """The url-encoded form fields of a POST, as Go's `ParseForm` (which Loki's handlers
    use) reads them: other bodies are ignored, and a body over MAX_FORM_SIZE is
    BodyTooLarge (413) without being read whole. Read once per request."""
    cached: list[tuple[str, str]] | None = getattr(request.state, "form_fields", None)
    if cached is not None:
        return cached
    fields: list[tuple[str, str]] = []
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and ctype == "application/x-www-form-urlencoded":
        body = await read_body(request, MAX_FORM_SIZE)
        fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    request.state.form_fields = fields
    return fields


async def params_of(request: Request) -> dict[str, str]:
    """Query string, plus the form fields of a POST (Loki takes both)."""
    p = dict(request.query_params)
    p.update(await form_of(request))
    return p
