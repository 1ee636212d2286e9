"""Redaction of sensitive fields, run on the worker thread before any sink sees a record."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

DEFAULT_REDACT = ("password", "passwd", "secret", "token", "access_token", "refresh_token",
                  "api_key", "apikey", "authorization", "cookie", "set-cookie")
MASK = "***"
_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@")
_MAX_DEPTH = 6


class Redactor:
    """Masks values whose key is sensitive (case-insensitive, at any depth up to 6) and
    `user:pass@` credentials inside URL-looking strings. Returns a new record only when
    something changed, so records shared between sinks are never mutated."""

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACT, *, url_credentials: bool = True,
                 patterns: Iterable[str] = ()) -> None:
        self.keys = frozenset(k.lower() for k in keys)
        self.url_credentials = url_credentials
        self.patterns = [re.compile(p) for p in patterns]

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        out = self._dict(record, 0)
        return record if out is None else out

    def _dict(self, d: dict[str, Any], depth: int) -> dict[str, Any] | None:
        changed: dict[str, Any] | None = None
        for k, v in d.items():
            new = MASK if isinstance(k, str) and k.lower() in self.keys else self._value(v, depth)
            if new is not None and new is not v:
                if changed is None:
                    changed = dict(d)
                changed[k] = new
        return changed

    def _value(self, v: Any, depth: int) -> Any:
        if isinstance(v, str):
            s = v
            if self.url_credentials and "://" in s and "@" in s:
                s = _URL_CREDS.sub(r"\g<scheme>***:***@", s)
            for p in self.patterns:
                s = p.sub(MASK, s)
            return s if s != v else None
        if isinstance(v, dict) and depth < _MAX_DEPTH:
            return self._dict(v, depth + 1)
        return None
