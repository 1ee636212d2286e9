"""Loki's query endpoints: query_range, query, labels, label values, series."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sluiceway.logql import LogSource, QueryParams, check_resolution, evaluate, parse_selector
from sluiceway.model import Matcher
from sluiceway.server._context import (
    JSONResponse,
    ServerContext,
    ctx_of,
    form_of,
    params_of,
)
from sluiceway.server._params import (
    ParamError,
    parse_direction,
    parse_duration_ns,
    parse_limit,
    parse_step,
    parse_time,
    time_range,
)
from sluiceway.server._querier import StoreSource
from sluiceway.server._tenants import label_names, label_values, read_source

router = APIRouter()


def _query_params(ctx: ServerContext, request: Request, p: dict[str, str],
                  instant: bool) -> QueryParams:
    limits = ctx.limits
    limit = parse_limit(p.get("limit"), 100, limits.max_entries_limit_per_query)
    if instant:
        start = end = parse_time(p.get("time"), time.time_ns(), "time")
    else:
        start, end = time_range(p, 3600)
        if limits.max_query_length and end - start > limits.max_query_length * 1e9:
            raise ParamError(f"the query time range exceeds the limit (query length: "
                             f"{(end - start) / 3.6e12:.0f}h, limit: "
                             f"{limits.max_query_length / 3600:.0f}h)")
    step, interval = p.get("step"), p.get("interval")
    step_ns = parse_step(step) if step else None
    if step_ns is not None:
        check_resolution(start, end, step_ns)  # log queries too, as Loki
    return QueryParams(
        tenants=ctx.tenants(request.headers, allow_many=True), start=start, end=end,
        limit=limit, direction=parse_direction(p.get("direction")), step_ns=step_ns,
        interval_ns=parse_duration_ns(interval, "interval") if interval else None,
        instant=instant,
        categorize_labels="categorize-labels" in request.headers.get(
            "x-loki-response-encoding-flags", ""),
        max_series=limits.max_query_series, max_line_size=ctx.template_cap,
        deadline=ctx.deadline(), levels=ctx.level_rules())


async def _run(request: Request, instant: bool) -> Response:
    ctx = ctx_of(request)
    p = await params_of(request)
    if not p.get("query"):
        raise ParamError("query parameter is required")
    qp = _query_params(ctx, request, p, instant)
    source = StoreSource(ctx.store)
    result = await run_in_threadpool(evaluate, read_source(source, qp.tenants), p["query"], qp)
    body = {"status": "success", "data": result.to_loki_json()}
    if source.warnings:  # data left out (a damaged chunk): Loki's top-level warnings
        body["warnings"] = source.warnings
    return JSONResponse(body)


@router.api_route("/loki/api/v1/query_range", methods=["GET", "POST"])
@router.api_route("/api/prom/query", methods=["GET", "POST"])
async def query_range(request: Request) -> Response:
    return await _run(request, instant=False)


@router.api_route("/loki/api/v1/query", methods=["GET", "POST"])
async def query(request: Request) -> Response:
    return await _run(request, instant=True)


async def _label_scope(request: Request) -> tuple[LogSource, list[str], int, int,
                                                 list[Matcher]]:
    """Source, tenants, time range (default the last 6 h, as Loki) and the `query`."""
    ctx = ctx_of(request)
    p = await params_of(request)
    start, end = time_range(p, 6 * 3600)
    matchers = parse_selector(p["query"]) if p.get("query") else []
    tenants = ctx.tenants(request.headers, True)
    return read_source(StoreSource(ctx.store), tenants), tenants, start, end, matchers


@router.api_route("/loki/api/v1/labels", methods=["GET", "POST"])
@router.api_route("/loki/api/v1/label", methods=["GET", "POST"])
async def labels(request: Request) -> Response:
    source, tenants, start, end, matchers = await _label_scope(request)
    names = await run_in_threadpool(label_names, source, tenants, start, end, matchers)
    return JSONResponse({"status": "success", "data": names})


@router.api_route("/loki/api/v1/label/{name}/values", methods=["GET", "POST"])
async def values(request: Request) -> Response:
    source, tenants, start, end, matchers = await _label_scope(request)
    vals = await run_in_threadpool(label_values, source, tenants,
                                   request.path_params["name"], start, end, matchers)
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
    source = read_source(StoreSource(ctx.store), tenants)
    seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for sel in selectors:
        for s in await run_in_threadpool(source.series, tenants, parse_selector(sel), start,
                                         end):
            seen.setdefault(tuple(sorted(s.labels.items())), dict(s.labels))
    return JSONResponse({"status": "success", "data": list(seen.values())})
