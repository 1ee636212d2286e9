"""`POST /loki/api/v1/push`: decode and validate in a worker, then WAL, heads, 204."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sluiceway.server._distributor import prepare_push
from sluiceway.server._ingest import loki_ingest

router = APIRouter()


@router.post("/loki/api/v1/push")
@router.post("/api/prom/push")
async def push(request: Request) -> Response:
    return await loki_ingest(request, prepare_push)
