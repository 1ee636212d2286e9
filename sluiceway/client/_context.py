"""Request-scoped context carried by contextvars (per thread and per asyncio task)."""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from typing import Any

_EMPTY: dict[str, Any] = {}
context_var: ContextVar[dict[str, Any]] = ContextVar("sluiceway_context", default=_EMPTY)


def bind_contextvars(**fields: Any) -> Token[dict[str, Any]]:
    """Add fields to every record logged from this context; returns a reset token."""
    cur = context_var.get()
    if isinstance(cur, RequestContext):
        return context_var.set(RequestContext({**cur, **fields}, cur.scope))
    return context_var.set({**cur, **fields})


def unbind_contextvars(*keys: str) -> None:
    cur = context_var.get()
    kept = {k: v for k, v in cur.items() if k not in keys}
    context_var.set(RequestContext(kept, cur.scope) if isinstance(cur, RequestContext) else kept)


def clear_contextvars() -> None:
    context_var.set(_EMPTY)


def reset_contextvars(token: Token[dict[str, Any]]) -> None:
    context_var.reset(token)


def get_contextvars() -> dict[str, Any]:
    return dict(context_var.get())


class RequestContext(dict[str, Any]):
    """Context bound by the ASGI middleware. The route template is known only after
    routing, so it is read from the ASGI scope when each record is built."""

    __slots__ = ("scope",)

    def __init__(self, fields: dict[str, Any], scope: MutableMapping[str, Any]) -> None:
        super().__init__(fields)
        self.scope = scope

    def route(self) -> str | None:
        r = self.scope.get("route")
        path = getattr(r, "path", None)
        return path if isinstance(path, str) else None
