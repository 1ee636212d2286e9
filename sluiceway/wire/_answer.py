"""What a Loki push answer means for the lines of the batch: one classifier for the agent's
shipper and the client's LokiSink, and one way to read the URL they push to.

- 2xx: `shipped`.
- 400 naming rejected lines (`total ignored: N out of M`): `partial` — N lines lost, by
  Loki's reason; the rest shipped.
- another 400, 409, 422, …: `rejected` — the whole batch lost, by Loki's reason or
  `http_<status>`.
- 3xx, 401, 403, 404, 405, 407: `config_error` — retried forever with capped backoff,
  whatever the retry limit; the backend is shown DOWN.
- 413: `too_large` — split in halves and sent again; one line still too large is lost
  as `too_large`.
- 408, 425, 429, 5xx: `retry` — retried, `Retry-After` honoured; lost as `rate_limited`
  or `server_error` only when a configured retry limit gives up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from sluiceway.wire._retry import parse_retry_after

PUSH_PATH = "/loki/api/v1/push"
_PUSH_PATHS = (PUSH_PATH, "/api/prom/push")  # the second: Loki's deprecated alias
_DETAIL_CHARS = 300

AnswerKind = Literal["shipped", "partial", "rejected", "config_error", "too_large", "retry"]

_IGNORED_RE = re.compile(r"total ignored:\s*(\d+)\s+out of\s+(\d+)")
# Loki's per-line rejection texts (and Sluiceway's, which uses the same words) -> the
# reason a lost line is counted under. First match wins.
_REASONS = (("too far behind", "too_far_behind"), ("out of order", "too_far_behind"),
            ("too old", "too_old"), ("greater_than_max_sample_age", "too_old"),
            ("too new", "too_far_in_future"), ("too_far_in_future", "too_far_in_future"),
            ("max entry size", "line_too_long"), ("line_too_long", "line_too_long"),
            ("line too long", "line_too_long"),
            ("structured metadata too large", "structured_metadata_too_large"),
            ("too many structured metadata", "structured_metadata_too_many"))
# Every fixed reason `classify_push_answer` names (besides `http_<status>`), for counters
# shown at 0 before anything happened.
ANSWER_REASONS: tuple[str, ...] = ("too_large", "rate_limited", "server_error",
                                   *dict.fromkeys(r for _, r in _REASONS))
_CONFIG_ERRORS = frozenset({401, 403, 404, 405, 407})
_RETRY = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """The meaning of one answer to a push; see the module docstring for the kinds.

    `reason` names what the lines are lost as if they are: for `rejected` the whole
    batch, for `retry` only once a retry limit gives up, for `too_large` a single line
    that cannot be split further. `detail` is the status and the start of the body, for
    logs and for the backend state shown to operators.
    """

    kind: AnswerKind
    status: int
    reason: str = ""
    detail: str = ""
    retry_after: float | None = None
    ignored: int = 0  # `partial`: lines Loki says it ignored
    by_reason: Mapping[str, int] = field(default_factory=dict)  # `partial`, if per line

    def lost(self, lines: int) -> dict[str, int]:
        """Lines of a batch of `lines` that this answer loses, by reason (empty for
        kinds that lose nothing now)."""
        if self.kind == "rejected":
            return {self.reason: lines}
        if self.kind != "partial":
            return {}
        bad = min(lines, self.ignored)
        if self.by_reason and sum(self.by_reason.values()) == bad:
            return dict(self.by_reason)
        return {self.reason: bad} if bad else {}


def classify_push_answer(status: int, body: str,
                         headers: Mapping[str, str] | None = None) -> PushAnswer:
    """Classify a push answer from its status, body text and headers (`Retry-After`)."""
    detail = f"HTTP {status}: {_squeeze(body)}" if body.strip() else f"HTTP {status}"
    if 200 <= status < 300:
        return PushAnswer("shipped", status)
    if status == 413:
        return PushAnswer("too_large", status, "too_large", detail)
    if status in _RETRY or status >= 500:
        ra = parse_retry_after(headers.get("Retry-After") if headers is not None else None)
        reason = "rate_limited" if status == 429 else "server_error"
        return PushAnswer("retry", status, reason, detail, retry_after=ra)
    if status in _CONFIG_ERRORS or 300 <= status < 400:
        return PushAnswer("config_error", status, f"http_{status}", detail)
    reason = _reason(body) or f"http_{status}"
    if status == 400:
        ignored = sum(int(n) for n, _ in _IGNORED_RE.findall(body))
        if ignored:
            return PushAnswer("partial", status, reason, detail, ignored=ignored,
                              by_reason=_per_line_reasons(body))
    return PushAnswer("rejected", status, reason, detail)


def _squeeze(body: str) -> str:
    text = " ".join(body.split())
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + "…"


def _reason(text: str) -> str | None:
    low = text.lower()
    return next((r for needle, r in _REASONS if needle in low), None)


def _per_line_reasons(body: str) -> dict[str, int]:
    """Loki writes one detail line per rejected entry: count them by reason. The caller
    uses this only when it accounts for every ignored line."""
    counts: dict[str, int] = {}
    for line in body.splitlines():
        r = _reason(line)
        if r is not None and not _IGNORED_RE.search(line):
            counts[r] = counts.get(r, 0) + 1
    return counts


def push_url(url: str) -> str:
    """The push endpoint for `url` given as a base URL (`http://host:3100`, or with a path
    prefix behind a proxy) or as the full push URL, as Promtail's `clients[].url` is."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if not path.endswith(_PUSH_PATHS):
        path += PUSH_PATH
    return urlunsplit(parts._replace(path=path))


def base_url(url: str) -> str:
    """`url` without the push path (and without a trailing slash): where the server's
    other endpoints (heartbeats) live."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    for suffix in _PUSH_PATHS:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return urlunsplit(parts._replace(path=path)).rstrip("/")
