"""`POST /otlp/v1/logs` (OTLP/HTTP logs, as Loki 3 serves it): decode in a worker, then
the same store checks, rate limit, WAL and 204 as a Loki push. Records that validation
rejects (too old, too new, too long) are answered the OTLP way: 200 with
`partial_success`, the others stored."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sluiceway.server._distributor import Validated
from sluiceway.server._ingest import loki_ingest
from sluiceway.server._otlp_ingest import prepare_otlp
from sluiceway.wire import partial_success

router = APIRouter()


def _partial(request: Request, v: Validated) -> Response:
    body, media = partial_success(v.total_rejected, v.message(),
                                  request.headers.get("content-type"))
    return Response(body, 200, media_type=media)


@router.post("/otlp/v1/logs")
async def otlp_logs(request: Request) -> Response:
    return await loki_ingest(request, prepare_otlp, _partial)
