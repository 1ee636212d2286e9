"""What a sink may raise to tell its worker how to treat a failed batch."""

from __future__ import annotations

from collections.abc import Mapping


class SinkRetryable(Exception):
    """The batch may succeed later (outage, 429, 5xx); `retry_after` in seconds if known.

    `reason` is what the batch is counted lost as if the worker's `max_retries` gives up
    (`rate_limited`, `server_error`; `sink_error` by default).
    """

    def __init__(self, message: str, retry_after: float | None = None, *,
                 reason: str = "sink_error", status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason
        self.status = status  # the HTTP status, when there was an answer


class SinkConfigError(SinkRetryable):
    """The destination refuses every batch until its configuration is fixed (a wrong URL,
    credentials or proxy: HTTP 401, 403, 404, 405). The worker keeps the records and
    retries forever with capped backoff (`max_retries` does not apply) and reports the
    sink DOWN with `status` and the message."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, reason="config_error", status=status)


class SinkRejected(Exception):
    """The destination refused records for good: do not retry.

    With `lost` (reason -> count), only that many records of the batch were refused (a
    Loki partial 400) and the rest were written; otherwise the whole batch is lost as
    `reason`.
    """

    def __init__(self, message: str, *, reason: str = "rejected",
                 lost: Mapping[str, int] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.lost = dict(lost) if lost is not None else None


class SinkTooLarge(Exception):
    """The batch is too large for the destination (HTTP 413): the worker splits it in
    halves and writes each; a single record that is still too large is lost as
    `too_large`."""
