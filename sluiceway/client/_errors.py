"""What a sink may raise to tell its worker how to treat a failed batch."""

from __future__ import annotations


class SinkRetryable(Exception):
    """The batch may succeed later (outage, 429, 5xx); `retry_after` in seconds if known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkRejected(Exception):
    """The destination refused the batch for good (a 4xx other than 429): do not retry."""
