"""Index statistics, log volume and query formatting (what Grafana's panels ask for).

Stats and volume read through the store's `LogSource` (`StoreSource`); tenant matchers
only pick tenants (`read_scope`): no `__tenant_id__` label is added to their answers."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from sluiceway.logql import IndexStats, check_resolution, format_query, parse, parse_selector
from sluiceway.server._context import JSONResponse, ctx_of, params_of
from sluiceway.server._params import (
    ParamError,
    lookback_floor,
    parse_limit,
    parse_step,
    time_range,
    within_lookback,
)
from sluiceway.server._querier import StoreSource
from sluiceway.server._tenants import read_scope
from sluiceway.server._volume import bucket_edges, volume

router = APIRouter()


async def _required_query(request: Request) -> tuple[dict[str, str], str]:
    p = await params_of(request)
    if not p.get("query"):
        raise ParamError("query parameter is required")
    return p, p["query"]


@router.api_route("/loki/api/v1/index/stats", methods=["GET", "POST"])
async def stats(request: Request) -> Response:
    ctx = ctx_of(request)
    p, q = await _required_query(request)
    start, end = time_range(p, 3600)
    tenants, matchers = read_scope(ctx.tenants(request.headers, True), parse_selector(q))
    scope = within_lookback(start, end,
                            lookback_floor(ctx.read_limits(tenants).max_query_lookback))
    out = IndexStats()  # wholly before max_query_lookback: nothing
    if scope is not None:
        out = await run_in_threadpool(StoreSource(ctx.store).stats, tenants, matchers, *scope)
    return JSONResponse(dataclasses.asdict(out))


async def _volume(request: Request, ranged: bool) -> tuple[dict[Any, np.ndarray], int, int,
                                                           int | None]:
    ctx = ctx_of(request)
    p, q = await _required_query(request)
    start, end = time_range(p, 3600)
    step_ns: int | None = None
    if ranged:
        step = p.get("step")
        step_ns = parse_step(step) if step else int(max(1.0, (end - start) / 1e9 / 250) * 1e9)
        check_resolution(start, end, step_ns)  # query_range's 11,000 points rule
    targets = [t for t in p.get("targetLabels", "").split(",") if t] or None
    agg = p.get("aggregateBy", "series")
    if agg not in ("series", "labels"):
        raise ParamError(f"invalid aggregateBy {agg!r}: use series or labels")
    tenants, matchers = read_scope(ctx.tenants(request.headers, True), parse_selector(q))
    res = await run_in_threadpool(volume, StoreSource(ctx.store), tenants, matchers, start,
                                  end, step_ns, targets, parse_limit(p.get("limit"), 100, 0),
                                  agg, ctx.deadline(ctx.read_limits(tenants)))
    return res, start, end, step_ns


@router.api_route("/loki/api/v1/index/volume", methods=["GET", "POST"])
async def volume_instant(request: Request) -> Response:
    res, _, end, _ = await _volume(request, ranged=False)
    result = [{"metric": dict(k), "value": [end / 1e9, str(int(v[0]))]} for k, v in res.items()]
    return JSONResponse({"status": "success", "data": {"resultType": "vector",
                                                       "result": result}})


@router.api_route("/loki/api/v1/index/volume_range", methods=["GET", "POST"])
async def volume_range(request: Request) -> Response:
    res, start, end, step_ns = await _volume(request, ranged=True)
    assert step_ns is not None
    edges = bucket_edges(start, end, step_ns).tolist()
    # Loki stamps each bucket 1 ms before its boundary, the last one at `end`.
    stamps = [round((e - 1_000_000) / 1e9, 3) for e in edges[1:-1]] + [end / 1e9]
    matrix = [{"metric": dict(k), "values": [[t, str(int(x))] for t, x in
                                             zip(stamps, v.tolist(), strict=True)]}
              for k, v in res.items()]
    return JSONResponse({"status": "success", "data": {"resultType": "matrix",
                                                       "result": matrix}})


@router.api_route("/loki/api/v1/format_query", methods=["GET", "POST"])
async def fmt(request: Request) -> Response:
    _, q = await _required_query(request)
    return JSONResponse({"status": "success", "data": format_query(parse(q))})
