"""`sluiceway ledger`: the server's ledger as a table (or JSON).

Exit codes: 0 the ledger was printed; 1 the server could not be reached or failed;
2 bad input (a flag, a time the server refuses). Never a traceback."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer

Opt = typer.Option


def _fail(msg: str, code: int) -> NoReturn:
    print(f"Error: {msg}", file=sys.stderr)
    raise typer.Exit(code)


def fetch(addr: str, org_id: str | None, since: str | None, until: str | None
          ) -> dict[str, Any]:
    if not addr.startswith(("http://", "https://")):
        _fail(f"invalid --addr {addr!r}: expected http://host:port", 2)
    params = {k: v for k, v in (("since", since), ("until", until)) if v}
    headers = {"X-Scope-OrgID": org_id} if org_id else {}
    try:
        r = httpx.get(addr.rstrip("/") + "/sluiceway/api/v1/ledger", params=params,
                      headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {addr}: {exc}", 1)
    if r.status_code == 400:
        _fail(r.text.strip(), 2)
    if r.status_code != 200:
        _fail(f"server answered {r.status_code}: {r.text.strip()[:300]}", 1)
    try:
        data: dict[str, Any] = r.json()["data"]
    except (ValueError, KeyError):
        _fail(f"{addr} did not answer as a Sluiceway server", 1)
    return data


def table(data: dict[str, Any]) -> str:
    head = ["SOURCE", "EPOCH", "EMITTED", "STORED", "LOST", "IN FLIGHT", "UNEXPLAINED"]
    rows = [[r["source"], r["epoch"], str(r["emitted"]), str(r["stored"]),
             _detail(r["lost"], r["lost_by"], "reason"),
             _detail(r["in_flight"], r["in_flight_by"], "where"), str(r["unexplained"])]
            for r in data["sources"]]
    t = data["total"]
    rows.append(["total", "", str(t["emitted"]), str(t["stored"]), str(t["lost"]),
                 str(t["in_flight"]), str(t["unexplained"])])
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip()
             for x in [head, *rows]]
    lines.append(f"unattributed lines (stored without numbers): {data['unattributed']}")
    return "\n".join(lines)


def _detail(n: int, parts: list[dict[str, Any]], key: str) -> str:
    if not parts:
        return str(n)
    return f"{n} (" + ", ".join(f"{p['hop']} {p[key]} {p['lines']}" for p in parts) + ")"


def ledger(
    addr: Annotated[str, Opt("--addr", envvar="SLUICEWAY_ADDR",
                             help="Server address.")] = "http://127.0.0.1:3100",
    org_id: Annotated[str | None, Opt("--org-id", help="Tenant (X-Scope-OrgID).")] = None,
    since: Annotated[str | None, Opt("--since", help="Epochs active since: a time or a "
                                     "duration back from --until (24h).")] = None,
    until: Annotated[str | None, Opt("--until", help="The ledger as of this time "
                                     "(default: now).")] = None,
    output: Annotated[str, Opt("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Every numbered line: stored, lost (where, why), in flight, or unexplained."""
    if output not in ("table", "json"):
        _fail(f"invalid --output {output!r}: table or json", 2)
    data = fetch(addr, org_id, since, until)
    if output == "json":
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(table(data))
