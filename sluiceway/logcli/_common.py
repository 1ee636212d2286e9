"""What every logcli-style command shares: the server address and tenant options, time
ranges, one GET that returns a Loki answer's `data`, and how labels and times print.

Exit codes: 0 ok, 1 server or connection error, 2 bad input (an address that is not an
http(s) URL, a time that does not parse); never a traceback.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
import typer

from sluiceway.model import EARLIEST_NS, LATEST_NS, parse_duration, parse_time_param

T = TypeVar("T")


class Output(StrEnum):
    default = "default"
    raw = "raw"
    jsonl = "jsonl"


class CliError(Exception):
    """A failure to report on stderr; `code` 1 = server/connection, 2 = bad input."""

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self.code = code


# --- the options every command takes ---------------------------------------------------

Addr = Annotated[str, typer.Option(
    "--addr", envvar=["SLUICEWAY_ADDR", "LOKI_ADDR"],
    help="Server address (env SLUICEWAY_ADDR, or LOKI_ADDR as logcli reads it).")]
OrgId = Annotated[str | None, typer.Option(
    "--org-id", envvar="LOKI_ORG_ID", help="Tenant (X-Scope-OrgID).")]
From = Annotated[str | None, typer.Option(
    "--from", help="Start, RFC3339 or Unix epoch (default: --to minus --since).")]
To = Annotated[str | None, typer.Option(
    "--to", help="End (exclusive), RFC3339 or Unix epoch (default: now).")]
Since = Annotated[str, typer.Option("--since", help="Look-back when --from is not given.")]
DEFAULT_ADDR = "http://127.0.0.1:3100"


def run_command(body: Callable[[], None]) -> None:
    """Run a command's body: a `CliError` is one line on stderr and its exit code."""
    try:
        body()
    except CliError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def fail(exc: CliError) -> NoReturn:
    print(f"Error: {exc}", file=sys.stderr)
    raise typer.Exit(exc.code)


# --- input -----------------------------------------------------------------------------


def parse_time(text: str, what: str) -> int:
    """RFC3339 (`2026-11-23T10:00:00Z`, every digit of a fraction kept) or a Unix epoch in
    seconds, milliseconds, microseconds or nanoseconds (told apart by their digits) → ns;
    the server's own reader (`sluiceway.model.parse_time_param`)."""
    try:
        ns = parse_time_param(text, "auto")
    except ValueError:
        raise CliError(f"invalid {what} time {text!r}: use RFC3339, e.g. "
                       "2026-11-23T10:00:00Z", 2) from None
    if not EARLIEST_NS <= ns <= LATEST_NS:
        raise CliError(f"invalid {what} time {text!r}: out of range, a time must lie between "
                       "1677-09-21 and 2262-04-11", 2)
    return ns


def parse_span(text: str, what: str) -> float:
    try:
        secs = parse_duration(text)
    except ValueError:
        raise CliError(f"invalid {what} {text!r}: use e.g. 30s, 5m, 1h", 2) from None
    if secs <= 0:
        raise CliError(f"{what} must be positive, got {text!r}", 2)
    return secs


def time_range(from_: str | None, to: str | None, since: str) -> tuple[int, int]:
    end = parse_time(to, "--to") if to else time.time_ns()
    start = parse_time(from_, "--from") if from_ else end - int(parse_span(since, "--since")
                                                                  * 1e9)
    if start >= end:
        raise CliError("--from must be before --to", 2)
    return start, end


def check_addr(addr: str) -> str:
    """The server address as given, if it is an http(s) URL with a host."""
    try:
        parts = urlsplit(addr)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        ok = False
    if not ok:
        raise CliError(f"invalid --addr {addr!r}: expected http://host:port", 2)
    return addr


# --- HTTP ------------------------------------------------------------------------------


@contextmanager
def client(addr: str, org_id: str | None) -> Iterator[httpx.Client]:
    headers = {"X-Scope-OrgID": org_id} if org_id else {}
    with httpx.Client(base_url=check_addr(addr).rstrip("/"), headers=headers,
                      timeout=60.0) as c:
        yield c


def get_data(client: httpx.Client, path: str, params: dict[str, Any] | list[tuple[str, Any]],
             stats: list[dict[str, Any]] | None = None) -> Any:
    """The `data` of a Loki answer; its `stats` is appended to `stats` when given."""
    try:
        resp = client.get(path, params=params)
    except httpx.ConnectError as exc:
        raise CliError(f"cannot connect to {client.base_url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise CliError(f"request to {client.base_url} failed: {exc}") from None
    if resp.status_code != 200:
        body = resp.text.strip() or resp.reason_phrase
        raise CliError(f"server answered {resp.status_code}: {body}")
    try:
        data = resp.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise CliError(f"{client.base_url}{path} did not answer as Loki does: "
                       f"{resp.text.strip()[:200]!r}") from None
    if stats is not None and isinstance(data, dict) and isinstance(data.get("stats"), dict):
        stats.append(data["stats"])
    return data


# --- output ----------------------------------------------------------------------------


def label_text(labels: dict[str, str]) -> str:
    inner = ", ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def rfc3339(ns: int) -> str:
    d = dt.datetime.fromtimestamp(ns // 10**9, tz=dt.UTC)
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns (the first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)
