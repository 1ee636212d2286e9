"""Loki's query endpoints: query_range, query, labels, label values, series."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sluiceway.logql import (
    LogExpr,
    LogSource,
    MemorySource,
    QueryCancelled,
    QueryParams,
    QueryResult,
    check_resolution,
    evaluate,
    parse,
    parse_selector,
)
from sluiceway.model import Matcher
from sluiceway.server._config import LimitsSection
from sluiceway.server._context import (
    JSONResponse,
    ServerContext,
    ctx_of,
    form_of,
    params_of,
)
from sluiceway.server._params import (
    ParamError,
    check_entries_limit,
    check_query_length,
    lookback_floor,
    parse_direction,
    parse_duration_ns,
    parse_limit,
    parse_step,
    parse_time,
    time_range,
    within_lookback,
)
from sluiceway.server._querier import LookbackSource, StoreSource
from sluiceway.server._tenants import read_source

router = APIRouter()
log = logging.getLogger("sluiceway.query")
_DISCONNECT_POLL_S = 0.2


def _query_params(ctx: ServerContext, request: Request, p: dict[str, str],
                  instant: bool) -> tuple[QueryParams, LimitsSection]:
    tenants = ctx.tenants(request.headers, allow_many=True)
    limits = ctx.read_limits(tenants)
    limit = parse_limit(p.get("limit"), 100, 0)  # the maximum is checked for log queries
    if instant:
        start = end = parse_time(p.get("time"), time.time_ns(), "time")
    else:
        start, end = time_range(p, 3600)
    step, interval = p.get("step"), p.get("interval")
    step_ns = parse_step(step) if step else None
    if step_ns is not None and not instant:
        check_resolution(start, end, step_ns)  # log queries too, as Loki
    return QueryParams(
        tenants=tenants, start=start, end=end,
        limit=limit, direction=parse_direction(p.get("direction")), step_ns=step_ns,
        interval_ns=parse_duration_ns(interval, "interval") if interval else None,
        instant=instant,
        categorize_labels="categorize-labels" in request.headers.get(
            "x-loki-response-encoding-flags", ""),
        max_series=limits.max_query_series, max_line_size=ctx.template_cap(limits),
        deadline=ctx.deadline(limits), levels=ctx.level_rules(limits),
        options=ctx.exec_options(limits)), limits


def _evaluate(source: StoreSource, query: str, qp: QueryParams,
              limits: LimitsSection) -> QueryResult:
    """Loki's order: the entries limit (log range queries), the lookback (which may leave
    nothing to read), the query length; then the query itself."""
    expr = parse(query)
    if isinstance(expr, LogExpr) and not qp.instant:
        check_entries_limit(qp.limit, limits.max_entries_limit_per_query)
    floor = lookback_floor(limits.max_query_lookback)
    scope = within_lookback(qp.start, qp.end, floor)
    if scope is None:  # wholly before the lookback: Loki answers empty
        return evaluate(MemorySource(), expr, qp)
    if not qp.instant:
        qp.start = scope[0]
        check_query_length(qp.start, qp.end, limits.max_query_length)
    return evaluate(scoped(read_source(source, qp.tenants), floor), expr, qp)


def scoped(source: LogSource, floor: int | None) -> LogSource:
    """`source`, reading nothing before the lookback's `floor`."""
    return source if floor is None else LookbackSource(source, floor)


async def _run(request: Request, instant: bool) -> Response:
    ctx = ctx_of(request)
    p = await params_of(request)
    if not p.get("query"):
        raise ParamError("query parameter is required")
    qp, limits = _query_params(ctx, request, p, instant)
    source = StoreSource(ctx.store, qp.options, ctx.metrics.query_blocks.inc)
    result = await _evaluate_until_disconnect(request, source, p["query"], qp, limits)
    if result is None:
        return Response(status_code=499)  # nobody is listening any more (nginx's code)
    body = {"status": "success", "data": result.to_loki_json()}
    if source.warnings:  # data left out (a damaged chunk): Loki's top-level warnings
        body["warnings"] = source.warnings
    return JSONResponse(body)


async def _evaluate_until_disconnect(request: Request, source: StoreSource, query: str,
                                     qp: QueryParams,
                                     limits: LimitsSection) -> QueryResult | None:
    """Run the query on a worker thread; when the client disconnects first, set its
    cancel flag (every block read checks it), wait for the work to stop, return None."""
    task = asyncio.ensure_future(run_in_threadpool(_evaluate, source, query, qp, limits))
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            break
    qp.options.cancel.set()
    ctx_of(request).metrics.queries_cancelled.inc()
    with contextlib.suppress(QueryCancelled, Exception):
        await task
    log.info("query cancelled: client disconnected (query=%r)", query)
    return None


@router.api_route("/loki/api/v1/query_range", methods=["GET", "POST"])
@router.api_route("/api/prom/query", methods=["GET", "POST"])
async def query_range(request: Request) -> Response:
    return await _run(request, instant=False)


@router.api_route("/loki/api/v1/query", methods=["GET", "POST"])
async def query(request: Request) -> Response:
    return await _run(request, instant=True)


async def _label_scope(request: Request) -> tuple[LogSource, list[str], int, int,
                                                 list[Matcher]]:
    """Source, tenants, time range (default the last 6 h, as Loki) and the `query`; an
    empty source when the range lies wholly before `max_query_lookback`."""
    ctx = ctx_of(request)
    p = await params_of(request)
    start, end = time_range(p, 6 * 3600)
    matchers = parse_selector(p["query"]) if p.get("query") else []
    tenants = ctx.tenants(request.headers, True)
    source, start, end = read_scope_of(ctx, tenants, start, end)
    return source, tenants, start, end, matchers


def read_scope_of(ctx: ServerContext, tenants: list[str], start: int,
                  end: int) -> tuple[LogSource, int, int]:
    """What a metadata read (labels, values, series) reads: the tenants' source over the
    range the lookback and length limits leave, as Loki's frontend does for them."""
    limits = ctx.read_limits(tenants)
    floor = lookback_floor(limits.max_query_lookback)
    scope = within_lookback(start, end, floor)
    if scope is None:
        return MemorySource(), start, end
    check_query_length(scope[0], end, limits.max_query_length)
    return scoped(read_source(StoreSource(ctx.store), tenants), floor), scope[0], end


@router.api_route("/loki/api/v1/labels", methods=["GET", "POST"])
@router.api_route("/loki/api/v1/label", methods=["GET", "POST"])
async def labels(request: Request) -> Response:
    source, tenants, start, end, matchers = await _label_scope(request)
    names = await run_in_threadpool(source.label_names, tenants, matchers, start, end)
    return JSONResponse({"status": "success", "data": names})


@router.api_route("/loki/api/v1/label/{name}/values", methods=["GET", "POST"])
async def values(request: Request) -> Response:
    source, tenants, start, end, matchers = await _label_scope(request)
    vals = await run_in_threadpool(source.label_values, tenants,
                                   request.path_params["name"], matchers, start, end)
    return JSONResponse({"status": "success", "data": vals})


@router.api_route("/loki/api/v1/series", methods=["GET", "POST"])
async def series(request: Request) -> Response:
    ctx = ctx_of(request)
    p = await params_of(request)
    selectors = request.query_params.getlist("match[]") or request.query_params.getlist("match")
    selectors += [v for k, v in await form_of(request) if k == "match[]"]
    if not selectors:
        raise ParamError("at least one match[] parameter is required")
    start, end = time_range(p, 6 * 3600)
    tenants = ctx.tenants(request.headers, True)
    source, start, end = read_scope_of(ctx, tenants, start, end)
    seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for sel in selectors:
        for s in await run_in_threadpool(source.series, tenants, parse_selector(sel), start,
                                         end):
            seen.setdefault(tuple(sorted(s.labels.items())), dict(s.labels))
    return JSONResponse({"status": "success", "data": list(seen.values())})
