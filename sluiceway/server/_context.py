"""What every route needs: config, store, metrics, tail hub, ingest pool; and HTTP helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from sluiceway.logql import ResultsCache
from sluiceway.server._config import Config, LimitsSection
from sluiceway.server._ingest_pool import IngestPool
from sluiceway.server._metrics import ServerMetrics
from sluiceway.server._params import tenants_from_header
from sluiceway.server._pipeline import PipelineRegistry
from sluiceway.server._ratelimit import IngestionRateLimiter
from sluiceway.server._tail import TailHub
from sluiceway.store import Store

UI_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"


@dataclass(slots=True)
class ServerContext:
    cfg: Config
    metrics: ServerMetrics
    pipeline: PipelineRegistry
    hub: TailHub
    pool: IngestPool
    rate: IngestionRateLimiter
    opened_store: Store | None = None
    results_cache: ResultsCache | None = None  # results of closed query splits

    @property
    def limits(self) -> LimitsSection:
        return self.cfg.limits

    @property
    def store(self) -> Store:
        if self.opened_store is None:
            raise RuntimeError("the store is not open yet")
        return self.opened_store

    def tenants(self, headers: Headers, allow_many: bool) -> list[str]:
        """Tenant ids from X-Scope-OrgID (`a|b` on reads), or the default tenant."""
        return self.tenant_ids(headers.get("x-scope-orgid"), allow_many)

    def tenant_ids(self, value: str | None, allow_many: bool) -> list[str]:
        return tenants_from_header(value, self.cfg.server.default_tenant,
                                   self.cfg.server.auth_enabled, allow_many)


def ctx_of(conn: HTTPConnection) -> ServerContext:
    ctx: ServerContext = conn.app.state.ctx
    return ctx


class JSONResponse(Response):
    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def bad(msg: str, status: int = 400) -> PlainTextResponse:
    """Loki answers errors as text/plain with the message."""
    return PlainTextResponse(msg if msg.endswith("\n") else msg + "\n", status_code=status)


async def params_of(request: Request) -> dict[str, str]:
    """Query string, plus the form fields of a POST (Loki takes both)."""
    p = dict(request.query_params)
    if request.method == "POST":
        form = await request.form()
        p.update({k: str(v) for k, v in form.items()})
    return p
