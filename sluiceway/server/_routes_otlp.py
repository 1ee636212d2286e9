"""`POST /otlp/v1/logs` (OTLP/HTTP logs, as Loki 3 serves it): decode in a worker, then
the same store checks, rate limit, WAL and 204 as a Loki push."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from sluiceway.server._context import ServerContext, ctx_of
from sluiceway.server._distributor import Prepared
from sluiceway.server._ingest import loki_ingest, read_body
from sluiceway.server._otlp_ingest import prepare_otlp

router = APIRouter()


@router.post("/otlp/v1/logs")
async def otlp_logs(request: Request) -> Response:
    ctx = ctx_of(request)
    tenant = ctx.tenants(request.headers, allow_many=False)[0]
    return await loki_ingest(ctx, tenant, _prepare(ctx, tenant, request))


async def _prepare(ctx: ServerContext, tenant: str, request: Request) -> Prepared:
    max_body = ctx.cfg.server.max_body_size
    body = await read_body(request, max_body)
    return await ctx.pool.run(prepare_otlp, tenant, body, request.headers.get("content-type"),
                              request.headers.get("content-encoding"), max_body, ctx.limits,
                              time.time_ns())
