"""Errors raised by the LogQL parser and engine; their text is what the HTTP API answers."""

from __future__ import annotations


class QueryError(ValueError):
    """A query Loki would answer with HTTP 400; `str(err)` is the response body."""


class ParseError(QueryError):
    """A syntax or semantic error in the query text, in Loki's message format.

    With a position: `parse error at line 1, col 11: syntax error: unexpected ...`;
    without one (semantic checks on a whole expression): `parse error : <msg>`.
    """

    def __init__(self, msg: str, line: int = 0, col: int = 0) -> None:
        self.msg = msg
        self.line = line
        self.col = col
        if line or col:
            text = f"parse error at line {line}, col {col}: {msg}"
        else:
            text = f"parse error : {msg}"
        super().__init__(text)


INSTANT_LOG_QUERY = (
    "log queries are not supported as an instant query type, "
    "please change your query to a range query type"
)
METRIC_NOT_SUPPORTED = "metric queries are not supported yet"
