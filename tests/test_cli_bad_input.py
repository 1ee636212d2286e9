"""Every `sluiceway` command, given bad arguments or a bad config, says what is wrong in
one message and exits with code 2: never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import REPO

MISSING = "{tmp}/no-such-file.yaml"
BAD_YAML = "{tmp}/bad.yaml"
NOT_A_MAP = "{tmp}/list.yaml"
AGENT_OK = "{tmp}/agent.yaml"
PROMTAIL_OK = "{tmp}/promtail.yaml"
SERVER_BAD_LEVEL = "{tmp}/server-level.yaml"
AGENT_BAD_URL = "{tmp}/agent-url.yaml"
AGENT_UNKNOWN_KEY = "{tmp}/agent-key.yaml"

CASES: list[tuple[str, list[str]]] = [
    # the top level
    ("unknown command", ["nosuch"]),
    ("unknown option", ["--bogus"]),
    # server
    ("server: missing config", ["server", "-c", MISSING]),
    ("server: bad YAML", ["server", "-c", BAD_YAML]),
    ("server: config not a mapping", ["server", "-c", NOT_A_MAP]),
    ("server: unknown log level", ["server", "-c", SERVER_BAD_LEVEL]),
    ("server: bad listen address", ["server", "--listen", "nonsense"]),
    ("server: unknown option", ["server", "--bogus"]),
    # up
    ("up: bad listen address", ["up", "--no-demo", "--listen", "nonsense",
                                "--data-dir", "{tmp}/up"]),
    ("up: unknown option", ["up", "--bogus"]),
    # agent
    ("agent: no config", ["agent"]),
    ("agent: missing config", ["agent", "-c", MISSING]),
    ("agent: bad YAML", ["agent", "-c", BAD_YAML]),
    ("agent: config not a mapping", ["agent", "-c", NOT_A_MAP]),
    ("agent: unknown key", ["agent", "-c", AGENT_UNKNOWN_KEY]),
    ("agent: wrong URL", ["agent", "-c", AGENT_BAD_URL]),
    ("agent: unknown log level", ["agent", "-c", AGENT_OK, "--log-level", "loud"]),
    ("agent: Promtail flag, missing file", ["agent", f"-config.file={MISSING}"]),
    ("agent: Promtail flag, bad YAML", ["agent", f"-config.file={BAD_YAML}"]),
    ("agent: Promtail log level", ["agent", f"-config.file={PROMTAIL_OK}",
                                   "-log.level=loud"]),
    ("agent: unknown option", ["agent", "--bogus"]),
    ("agent status: wrong URL", ["agent", "status", "--url", "ftp://x:y"]),
    ("agent status: unknown option", ["agent", "status", "--bogus"]),
    ("agent convert: missing file", ["agent", "convert", MISSING]),
    ("agent convert: bad YAML", ["agent", "convert", BAD_YAML]),
    ("agent convert: no file", ["agent", "convert"]),
    # logcli-style commands
    ("query: no query", ["query"]),
    ("query: wrong URL", ["query", '{a="b"}', "--addr", "localhost:3100"]),
    ("query: bad time", ["query", '{a="b"}', "--from", "yesterday-ish"]),
    ("query: bad limit", ["query", '{a="b"}', "--limit", "-1"]),
    ("query: bad step", ["query", 'rate({a="b"}[1m])', "--step", "often"]),
    ("labels: wrong URL", ["labels", "--addr", "http://"]),
    ("labels: bad since", ["labels", "--since", "a while"]),
    ("series: no matcher", ["series"]),
    ("series: wrong URL", ["series", '{a="b"}', "--addr", "nope"]),
    ("volume: bad aggregateBy", ["volume", '{a="b"}', "--aggregateBy", "streams"]),
    ("volume: wrong URL", ["volume", '{a="b"}', "--addr", "http://host:port"]),
    ("volume_range: bad step", ["volume_range", '{a="b"}', "--step", "0s"]),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "bad.yaml").write_text("server: {listen: [unclosed\n")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "agent.yaml").write_text(
        f"url: http://127.0.0.1:9\ndata_dir: {tmp}/agent-data\n"
        "inputs: [{type: stdin}]\n")
    (tmp / "promtail.yaml").write_text(
        "clients: [{url: 'http://127.0.0.1:9/loki/api/v1/push'}]\n"
        f"positions: {{filename: {tmp}/positions.yaml}}\n"
        "scrape_configs: [{job_name: x, static_configs: [{labels: {__path__: /nonexistent}}]}]\n")
    (tmp / "server-level.yaml").write_text("server: {log_level: loud}\n")
    (tmp / "agent-url.yaml").write_text("url: ftp://example\ninputs: [{type: stdin}]\n")
    (tmp / "agent-key.yaml").write_text(
        "url: http://127.0.0.1:9\nqueue: {capacty: 5}\ninputs: [{type: stdin}]\n")
    return tmp


@pytest.mark.parametrize(("what", "args"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_without_a_traceback(files: Path, what: str,
                                               args: list[str]) -> None:
    argv = [a.replace("{tmp}", str(files)) for a in args]
    r = subprocess.run([sys.executable, "-m", "sluiceway", *argv], capture_output=True,
                       text=True, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == 2, f"{what}: exit {r.returncode}\n{out}"
    assert out.strip(), f"{what}: no message"


def test_help_of_every_command_shows_no_bool_metavar() -> None:
    """A flag takes no value: its help shows none."""
    for args in (["--help"], ["up", "--help"], ["server", "--help"], ["agent", "--help"],
                 ["agent", "status", "--help"], ["query", "--help"], ["series", "--help"],
                 ["labels", "--help"]):
        r = subprocess.run([sys.executable, "-m", "sluiceway", *args], capture_output=True,
                           text=True, cwd=REPO, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "<bool>" not in r.stdout, (args, r.stdout)


def test_version() -> None:
    from sluiceway import __version__

    r = subprocess.run([sys.executable, "-m", "sluiceway", "--version"], capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"sluiceway {__version__}"
