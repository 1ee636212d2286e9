"""Errors of push decoding; the server maps them to HTTP status codes."""

from __future__ import annotations


class WireError(ValueError):
    """A push body that cannot be decoded: answered with HTTP 400, not retryable."""


class BodyTooLarge(WireError):
    """The decompressed body would pass the configured limit: answered with HTTP 413.

    A subclass of WireError so that callers which only catch WireError still answer
    with a client error; the server checks for this class first.
    """

    def __init__(self, size: int | None, limit: int, decompressed: bool = True) -> None:
        self.size = size
        self.limit = limit
        self.decompressed = decompressed
        if not decompressed:
            msg = (f"request body too large: over the limit of {limit} bytes" if size is None
                   else f"request body too large: {size} bytes, limit {limit}")
        else:
            what = "passes" if size is None else f"is {size} bytes, over"
            msg = f"request body too large: decompressed body {what} the limit of {limit} bytes"
        super().__init__(msg)

    def __reduce__(self) -> tuple[type[BodyTooLarge], tuple[int | None, int, bool]]:
        # Raised in the server's ingest worker processes: it must survive pickling.
        return (BodyTooLarge, (self.size, self.limit, self.decompressed))
