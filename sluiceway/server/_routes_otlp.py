"""`POST /otlp/v1/logs` (OTLP/HTTP logs, as Loki 3 serves it): decode in a worker, then
the same rate limit, store and 204 as a Loki push. Records that are refused (too old,
too new, too long, too far behind their stream) are answered the OTLP way: 200 with
`partial_success`, the others stored."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sluiceway.server._distributor import Rejections
from sluiceway.server._ingest import loki_ingest
from sluiceway.server._otlp_ingest import prepare_otlp
from sluiceway.wire import partial_success

router = APIRouter()


def _partial(request: Request, rej: Rejections, stored: int) -> Response:
    body, media = partial_success(rej.total, rej.message(stored),
                                  request.headers.get("content-type"))
    return Response(body, 200, media_type=media)


@router.post("/otlp/v1/logs")
async def otlp_logs(request: Request) -> Response:
    return await loki_ingest(request, prepare_otlp, _partial)
