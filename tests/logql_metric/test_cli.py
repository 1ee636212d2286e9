"""`sluiceway query` as a subprocess against a real server (and its table printer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from sluiceway.logcli import is_metric, metric_rows, parse_time, rfc3339
from sluiceway.logcli._query import query
from tests.logql_metric.helpers import load_json
from tests.procs import REPO, ServerProcess, free_port, sluiceway_cmd

NOW = time.time_ns() // 10**9 * 10**9 - 120 * 10**9  # two minutes ago, whole second
FROM, TO = rfc3339(NOW - 60 * 10**9), rfc3339(NOW + 60 * 10**9)


def _push(url: str, streams: list[dict], tenant: str | None = None) -> None:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    r = httpx.post(f"{url}/loki/api/v1/push", json={"streams": streams}, headers=headers)
    assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    _push(shared_server.url, [
        {"stream": {"app": "api", "level": "info"},
         "values": [[str(NOW + i * 10**9), f"info {i}"] for i in range(40)]},
        {"stream": {"app": "api", "level": "error"},
         "values": [[str(NOW + i * 10**9 + 1), f"error {i}"] for i in range(0, 40, 10)]},
    ])
    _push(shared_server.url, [{"stream": {"app": "other"}, "values": [[str(NOW), "tenant two"]]}],
          tenant="two")
    return shared_server


def cli(*args: str, addr: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = ["query", *args] + (["--addr", addr] if addr else [])
    return subprocess.run(sluiceway_cmd(*full), capture_output=True, text=True, cwd=REPO,
                          timeout=30, env={**os.environ, **(env or {})})


def test_default_output_newest_first(server: ServerProcess) -> None:
    r = cli('{app="api"}', "--from", FROM, "--to", TO, "--limit", "3", addr=server.url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # detected_level: the server's (Loki's discover_log_levels), shown as logcli shows it
    labels = '{app="api", detected_level="info", level="info"}'
    assert lines == [
        f"{rfc3339(NOW + 39 * 10**9)} {labels} info 39",
        f"{rfc3339(NOW + 38 * 10**9)} {labels} info 38",
        f"{rfc3339(NOW + 37 * 10**9)} {labels} info 37",
    ]
    assert "\x1b[" not in r.stdout  # not a terminal: no colours


def test_forward_raw_and_jsonl(server: ServerProcess) -> None:
    r = cli('{app="api"}', "--from", FROM, "--to", TO, "--limit", "3", "--forward",
            "-o", "raw", addr=server.url)
    assert r.stdout.splitlines() == ["info 0", "error 0", "info 1"]
    r = cli('{app="api"} |= "error"', "--from", FROM, "--to", TO, "--output", "jsonl",
            addr=server.url)
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["line"] for x in rows] == ["error 30", "error 20", "error 10", "error 0"]
    assert rows[0]["labels"] == {"app": "api", "detected_level": "error", "level": "error"}
    assert rows[0]["timestamp"] == rfc3339(NOW + 30 * 10**9 + 1)


def test_limit_beyond_one_batch(server: ServerProcess) -> None:
    r = cli('{app="api"}', "--from", FROM, "--to", TO, "--limit", "100", "--batch", "7",
            "-o", "raw", addr=server.url)
    lines = r.stdout.splitlines()
    assert len(lines) == 44 and len(set(lines)) == 44
    r = cli('{app="api"}', "--from", FROM, "--to", TO, "--limit", "10", "--batch", "3",
            "--forward", "-o", "raw", addr=server.url)
    assert r.stdout.splitlines()[:4] == ["info 0", "error 0", "info 1", "info 2"]
    assert len(r.stdout.splitlines()) == 10


def test_since_and_env_addr(server: ServerProcess) -> None:
    r = cli('{app="api"}', "--since", "1h", "--limit", "1", "-o", "raw",
            env={"SLUICEWAY_ADDR": server.url})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "info 39\n"
    r = cli('{app="api"}', "--since", "10s", "-o", "raw", addr=server.url)
    assert r.returncode == 0 and r.stdout == ""


def test_org_id(server: ServerProcess) -> None:
    r = cli('{app="other"}', "--org-id", "two", "--from", FROM, "--to", TO, "-o", "raw",
            addr=server.url)
    assert r.stdout == "tenant two\n"
    r = cli('{app="other"}', "--from", FROM, "--to", TO, "-o", "raw", addr=server.url)
    assert r.stdout == ""


def test_server_error_exits_1_with_its_message(server: ServerProcess) -> None:
    r = cli('{app="api"', addr=server.url)
    assert r.returncode == 1
    assert "server answered 400: parse error" in r.stderr
    assert "Traceback" not in r.stderr


def test_connection_refused() -> None:
    r = cli('{app="api"}', addr=f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert "cannot connect to http://127.0.0.1:" in r.stderr and "Traceback" not in r.stderr


BAD_INPUT = [
    (["--from", "yesterday"], "invalid --from time"),
    (["--to", "2026-13-45T00:00:00Z"], "invalid --to time"),
    (["--since", "soon"], "invalid --since"),
    (["--from", "2026-11-23T10:00:00Z", "--to", "2026-11-23T09:00:00Z"], "--from must be"),
    (["--output", "xml"], "xml"),
    (["--limit", "-1"], "--limit"),
    (["--addr", "127.0.0.1:3100"], "invalid --addr"),
    (["--step", "0s"], "--step"),
]


def test_bad_input_exits_2_subprocess() -> None:
    r = cli('sum(rate({app="api"}[1m]))', "--from", "yesterday")
    assert r.returncode == 2
    assert r.stderr == "Error: invalid --from time 'yesterday': use RFC3339, e.g. " \
                       "2026-11-23T10:00:00Z\n"


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2(args: list[str], message: str) -> None:
    app = typer.Typer()
    app.command()(query)
    res = CliRunner().invoke(app, ['sum(rate({app="api"}[1m]))', *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr


def test_metric_query_table(server: ServerProcess) -> None:
    # instant at NOW+60s over [2m]: (NOW-60s, NOW+60s] holds all 40 info and 4 error lines
    r = cli('sum by (level) (count_over_time({app="api"}[2m]))', "--instant",
            "--to", rfc3339(NOW + 60 * 10**9), addr=server.url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TIME", "LABELS", "VALUE"]
    stamp = rfc3339(NOW + 60 * 10**9)
    assert lines[1:] == [f'{stamp}  {{level="error"}}  4', f'{stamp}  {{level="info"}}   40']
    # range, 1-minute steps, 1-minute windows: the windows tile the time line
    r = cli('sum by (level) (count_over_time({app="api"}[1m]))', "--from", rfc3339(NOW),
            "--to", rfc3339(NOW + 60 * 10**9), "--step", "1m", "-o", "jsonl",
            addr=server.url)
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["labels"]] = totals.get(row["labels"], 0) + float(row["value"])
    assert totals == {'{level="error"}': 4, '{level="info"}': 40}


def _tail_sessions(url: str) -> float:
    """Open live tail sessions on the server (all tenants)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(ln.split()[-1]) for ln in text.splitlines()
               if ln.startswith("sluiceway_tail_sessions{"))


def test_tail_follows_new_lines(server: ServerProcess) -> None:
    before = _tail_sessions(server.url)
    proc = subprocess.Popen(sluiceway_cmd("query", "--tail", '{app="tailed"}', "--addr",
                                          server.url, "-o", "raw"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        deadline = time.monotonic() + 60  # let it connect before the push
        while _tail_sessions(server.url) <= before:
            assert proc.poll() is None and time.monotonic() < deadline, "tail never connected"
            time.sleep(0.05)
        now = time.time_ns()
        _push(server.url, [{"stream": {"app": "tailed"},
                            "values": [[str(now), "live 1"], [str(now + 1), "live 2"]]}])
        assert proc.stdout is not None
        got = [proc.stdout.readline().strip() for _ in range(2)]
        assert got == ["live 1", "live 2"]
    finally:
        proc.terminate()
        proc.wait(10)
    # The server notices the closed socket only when it next sends; without this its
    # shutdown waits for the tail session (a server-side limitation, not the CLI's).
    _push(server.url, [{"stream": {"app": "tailed"}, "values": [[str(time.time_ns()), "x"]]}])


def test_tail_bad_query_exits_1(server: ServerProcess) -> None:
    r = cli("--tail", '{app="tailed"', addr=server.url)
    assert r.returncode == 1
    assert "parse error" in r.stderr


# --- in-process helpers ----------------------------------------------------------------


def test_metric_rows_from_loki_fixtures() -> None:
    matrix = load_json("query_range_metric_matrix.response.json")["data"]
    rows = metric_rows(matrix)
    assert rows[0] == (rfc3339(1795454100 * 10**9), '{app="api"}', "8")
    scalar = load_json("query_instant_scalar.response.json")["data"]
    assert metric_rows(scalar) == [(rfc3339(1795457460 * 10**9), "", "2")]
    vector = load_json("query_instant_vector.response.json")["data"]
    assert metric_rows(vector)[2] == (rfc3339(1795457460 * 10**9), '{app="worker"}', "60")


def test_tail_prints_an_entry_once() -> None:
    from sluiceway.logcli._query import _Recent

    seen = _Recent(size=2)
    assert seen.add((1, "{}", "a")) and not seen.add((1, "{}", "a"))
    assert seen.add((2, "{}", "a")) and seen.add((3, "{}", "a"))
    assert seen.add((1, "{}", "a"))  # forgotten once older than `size` entries


def test_is_metric_and_scalar_times() -> None:
    assert not is_metric('# a comment\n{app="api"} |= "x"')
    assert is_metric('sum(rate({app="api"}[1m]))') and is_metric("1 + 1")
    assert not is_metric('{app="api"')  # unparsable: sent as a log query, server explains
    secs = metric_rows({"resultType": "scalar", "result": [1795457460.5, "2"]})
    assert secs == [("2026-11-23T18:11:00.5Z", "", "2")]


@pytest.mark.parametrize(("text", "ns"), [
    ("2026-11-23T10:00:00Z", 1795428000 * 10**9),
    ("2026-11-23T10:00:00.123456789Z", 1795428000 * 10**9 + 123456789),
    ("2026-11-23T11:00:00+01:00", 1795428000 * 10**9),
    ("1795428000", 1795428000 * 10**9),
])
def test_parse_time(text: str, ns: int) -> None:
    assert parse_time(text, "--from") == ns
    assert Path(sys.executable).exists()


def test_stats_printed_on_stderr(server: ServerProcess) -> None:
    """`--stats` sums the answers' stats (every page of a log query) on stderr; stdout
    keeps only the result."""
    r = cli('{app="api"}', "--from", FROM, "--to", TO, "--limit", "44", "--batch", "20",
            "--stats", addr=server.url)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 44
    rows = dict(line.split(None, 1) for line in r.stderr.splitlines())
    assert rows["Requests"] == "3"
    assert int(rows["Summary.TotalEntriesReturned"]) >= 44  # pages repeat their edge
    assert int(rows["Summary.TotalLinesProcessed"]) >= 44
    assert int(rows["Querier.Store.BlocksRead"]) >= 1
    assert rows["Querier.Store.BlocksSkipped"] == "0"
    m = cli('sum by (level) (count_over_time({app="api"}[1m]))', "--from", FROM, "--to", TO,
            "--stats", addr=server.url)
    assert m.returncode == 0, m.stderr
    assert "Summary.TotalBytesProcessed" in m.stderr and "Summary.Splits" in m.stderr
    assert "Summary" not in m.stdout
