"""`POST /otlp/v1/logs` (OTLP/HTTP logs, as Loki 3 serves it): decode in a worker, then
the same store checks, rate limit, WAL and 204 as a Loki push."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sluiceway.server._ingest import loki_ingest
from sluiceway.server._otlp_ingest import prepare_otlp

router = APIRouter()


@router.post("/otlp/v1/logs")
async def otlp_logs(request: Request) -> Response:
    return await loki_ingest(request, prepare_otlp)
