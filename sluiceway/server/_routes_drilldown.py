"""What Grafana's Logs Drilldown asks for, in Loki's shapes: detected fields and their
values, detected labels, patterns, and the tenant's limits."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sluiceway import __version__
from sluiceway.logql import (
    LevelRules,
    LogExpr,
    QueryParams,
    StreamsResult,
    check_resolution,
    detected_field_values,
    detected_fields,
    evaluate,
    parse,
    parse_go_float,
    parse_selector,
)
from sluiceway.model import format_loki_size, format_prom_duration
from sluiceway.patterns import MinerUnavailable
from sluiceway.server._context import JSONResponse, ServerContext, bad, ctx_of, params_of
from sluiceway.server._params import (
    ParamError,
    lookback_floor,
    parse_limit,
    parse_step,
    time_range,
    within_lookback,
)
from sluiceway.server._querier import StoreSource
from sluiceway.server._tenants import read_source
from sluiceway.wire import OTLP_INDEX_ATTRIBUTES

router = APIRouter()

DEFAULT_LINE_LIMIT = 100  # Loki's: detected fields read the newest 100 lines by default
DEFAULT_FIELD_LIMIT = 1000
# Loki keeps these in detected labels even when every value looks like an id.
STATIC_LABELS = frozenset(("cluster", "namespace", "instance", "pod"))


def _step(p: dict[str, str], start: int, end: int) -> int:
    """`step` (default: the range / 250, at least 1 s, as Loki) within 11,000 points."""
    step = parse_step(p["step"]) if p.get("step") else max(1, (end - start) // 10**9 // 250) * 10**9
    check_resolution(start, end, step)
    return step


def _scope(ctx: ServerContext, tenants: list[str], start: int,
           end: int) -> tuple[int, int] | None:
    """The range a read may see under the tenants' `max_query_lookback` (None: none of
    it; Loki answers empty)."""
    return within_lookback(start, end,
                           lookback_floor(ctx.read_limits(tenants).max_query_lookback))


async def _fields_answer(request: Request, name: str | None) -> Response:
    ctx = ctx_of(request)
    p = await params_of(request)
    if not p.get("query"):
        raise ParamError("query parameter is required")
    expr = parse(p["query"])
    if not isinstance(expr, LogExpr):
        raise ParamError("detected fields need a log query, not a metric query")
    start, end = time_range(p, 3600)
    _step(p, start, end)
    tenants = ctx.tenants(request.headers, True)
    lim = ctx.read_limits(tenants)
    line_limit = parse_limit(p.get("line_limit"), DEFAULT_LINE_LIMIT, 0)
    if lim.max_entries_limit_per_query and line_limit > lim.max_entries_limit_per_query:
        raise ParamError(f"max entries limit per query exceeded, limit > "
                         f"max_entries_limit_per_query ({line_limit} > "
                         f"{lim.max_entries_limit_per_query})")
    limit = parse_limit(p.get("limit") or p.get("field_limit"), DEFAULT_FIELD_LIMIT, 0)
    scope = _scope(ctx, tenants, start, end)
    if scope is None:
        return JSONResponse({})
    start = scope[0]
    qp = QueryParams(tenants, start, end, limit=line_limit, direction="backward",
                     categorize_labels=True, max_series=lim.max_query_series,
                     max_line_size=ctx.template_cap(lim), deadline=ctx.deadline(lim),
                     levels=ctx.level_rules(lim), options=ctx.exec_options(lim))
    res = await run_in_threadpool(evaluate, read_source(StoreSource(ctx.store), tenants), expr,
                                  qp)
    assert isinstance(res.data, StreamsResult)  # a log query answers streams
    if name is None:
        fields = detected_fields(res.data, limit)
        return JSONResponse({"fields": fields, "limit": limit} if fields else {})
    values = detected_field_values(res.data, name, limit)
    return JSONResponse({"limit": limit, "values": values} if values else {})


@router.get("/loki/api/v1/detected_fields")
async def fields(request: Request) -> Response:
    return await _fields_answer(request, None)


@router.get("/loki/api/v1/detected_field/{name}/values")
async def field_values(request: Request) -> Response:
    return await _fields_answer(request, request.path_params["name"])


def _looks_like_ids(values: set[str]) -> bool:
    """Every value a number or a UUID (not a 0/1 flag): such a label is left out."""
    if not values:
        return True
    if len(values) <= 2 and values <= {"0", "1"}:
        return False
    for v in values:
        if parse_go_float(v) is None:
            try:
                uuid.UUID(v)
            except ValueError:
                return False
    return True


def detected_labels(ctx: ServerContext, tenants: list[str], query: str | None, start: int,
                    end: int) -> list[dict[str, Any]]:
    matchers = parse_selector(query) if query else []
    values: dict[str, set[str]] = {}
    source = read_source(StoreSource(ctx.store), tenants)
    for s in source.series(tenants, matchers, start, end):
        for k, v in s.labels.items():
            values.setdefault(k, set()).add(v)
    return [{"label": k, "cardinality": len(vs)} for k, vs in sorted(values.items())
            if k in STATIC_LABELS or not _looks_like_ids(vs)]


@router.get("/loki/api/v1/detected_labels")
async def labels(request: Request) -> Response:
    ctx = ctx_of(request)
    p = await params_of(request)
    start, end = time_range(p, 3600)
    tenants = ctx.tenants(request.headers, True)
    scope = _scope(ctx, tenants, start, end)
    found = [] if scope is None else await run_in_threadpool(
        detected_labels, ctx, tenants, p.get("query"), *scope)
    return JSONResponse({"detectedLabels": found} if found else {})


@router.get("/loki/api/v1/patterns")
async def patterns(request: Request) -> Response:
    ctx = ctx_of(request)
    p = await params_of(request)
    if ctx.patterns is None:
        return bad("the pattern ingester is disabled (pattern_ingester.enabled: false)", 404)
    matchers = parse_selector(p.get("query") or "")
    start, end = time_range(p, 3600)
    step = _step(p, start, end)
    tenants = ctx.tenants(request.headers, True)
    scope = _scope(ctx, tenants, start, end)
    try:
        found = [] if scope is None else await run_in_threadpool(
            ctx.patterns.query, tenants, matchers, *scope, step)
    except MinerUnavailable as exc:
        return bad(str(exc), 503)
    return HTMLEscapedJSON({"status": "success", "data": [s.to_json() for s in found]})


class HTMLEscapedJSON(JSONResponse):
    """JSON with `<`, `>` and `&` written as `\\u003c`… as Loki writes patterns (the same
    JSON; those characters only occur inside strings)."""

    def render(self, content: Any) -> bytes:
        return (super().render(content).replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
                .replace(b"&", b"\\u0026"))


def prom_duration(seconds: float) -> str:
    """A duration limit as Loki writes one (Prometheus' form: `30d1h`, `1m`, `0s`)."""
    return format_prom_duration(round(seconds * 1e9))


def drilldown_limits(ctx: ServerContext, tenant: str) -> dict[str, Any]:
    lim, cfg = ctx.limits_for(tenant), ctx.cfg
    return {
        "limits": {
            "discover_log_levels": ctx.level_rules(lim) is not None,
            "discover_service_name": [],  # service_name is added to OTLP pushes only
            "log_level_fields": list(LevelRules(tuple(lim.log_level_fields)).fields),
            "max_entries_limit_per_query": lim.max_entries_limit_per_query,
            "max_line_size_truncate": lim.max_line_size_truncate,
            "max_query_bytes_read": format_loki_size(int(lim.max_query_bytes_read)),
            "max_query_length": prom_duration(lim.max_query_length),
            "max_query_lookback": prom_duration(lim.max_query_lookback),
            "max_query_range": "0s",
            "max_query_series": lim.max_query_series,
            "metric_aggregation_enabled": False,
            "otlp_config": {"resource_attributes": {"attributes_config": [
                {"action": "index_label", "attributes": sorted(OTLP_INDEX_ATTRIBUTES)}]}},
            "pattern_persistence_enabled": False,
            "query_timeout": prom_duration(lim.query_timeout),
            "retention_period": prom_duration(cfg.retention_period(lim)),
            "volume_enabled": True,
            "volume_max_series": 1000,
        },
        "pattern_ingester_enabled": cfg.pattern_ingester.enabled,
        "version": __version__,
    }


@router.get("/loki/api/v1/drilldown-limits")
async def limits(request: Request) -> Response:
    ctx = ctx_of(request)
    # As Loki: this handler wants the header itself, even when auth is off.
    if not request.headers.get("x-scope-orgid"):
        return bad("no org id", 401)
    tenant = ctx.tenants(request.headers, False)[0]  # one valid tenant id
    return JSONResponse(drilldown_limits(ctx, tenant), media_type="application/json")
