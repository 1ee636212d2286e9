"""`POST /loki/api/v1/push`: decode in a worker, check against the store, WAL, 204."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sluiceway.server._context import ServerContext, ctx_of
from sluiceway.server._distributor import Prepared
from sluiceway.server._ingest import loki_ingest, read_body

router = APIRouter()


@router.post("/loki/api/v1/push")
@router.post("/api/prom/push")
async def push(request: Request) -> Response:
    ctx = ctx_of(request)
    tenant = ctx.tenants(request.headers, allow_many=False)[0]
    return await loki_ingest(ctx, tenant, _prepare(ctx, tenant, request))


async def _prepare(ctx: ServerContext, tenant: str, request: Request) -> Prepared:
    max_body = ctx.cfg.server.max_body_size
    body = await read_body(request, max_body)
    return await ctx.pool.prepare(tenant, body, request.headers.get("content-type"),
                                  request.headers.get("content-encoding"), max_body,
                                  ctx.limits)
