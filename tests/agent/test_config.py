from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sluiceway.agent import ConfigError, load_config
from sluiceway.agent._config import FileInput, JsonStage, LabelsStage, StaticLabelsStage
from sluiceway.model import parse_duration, parse_size
from tests.procs import REPO, sluiceway_cmd

EXAMPLES = sorted(REPO.glob("examples/agent*.yaml"))
ISSUE_EXAMPLE = """
url: http://127.0.0.1:3100
tenant: team-a
data_dir: ./agent-data
queue: {capacity: 3200, max_bytes: 16MiB, when_full: spill,
        spill_max_bytes: 1GiB, when_spill_full: block}
batch: {max_lines: 1000, max_bytes: 1MiB, max_wait: 1s}
inputs:
  - type: file
    paths: ["/var/log/app/*.log"]
    start_at: beginning
    labels: {job: app}
    pipeline: [{json: {}}, {labels: [level]}]
"""


def test_issue_example_parses_with_units() -> None:
    cfg = load_config(text=ISSUE_EXAMPLE, environ={})
    assert cfg.queue.max_bytes == 16 * 1024**2
    assert cfg.queue.spill_max_bytes == 1024**3
    assert cfg.batch.max_wait == 1.0
    assert cfg.tenant == "team-a"
    inp = cfg.inputs[0]
    assert isinstance(inp, FileInput) and inp.start_at == "beginning"
    assert isinstance(inp.pipeline[0], JsonStage)
    assert isinstance(inp.pipeline[1], LabelsStage) and inp.pipeline[1].fields == {
        "level": "level"}


def test_defaults_are_the_documented_ones() -> None:
    cfg = load_config(text="url: http://x:3100\ninputs: [{type: stdin}]", environ={})
    assert (cfg.queue.capacity, cfg.queue.when_full, cfg.queue.when_spill_full) == (
        3200, "spill", "block")
    assert cfg.queue.spill_max_bytes == 1024**3
    assert (cfg.batch.max_lines, cfg.batch.max_bytes, cfg.batch.max_wait) == (1000, 1024**2, 1.0)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    load_config(path, environ={"HOSTNAME": "h"})


def test_env_overrides_and_expansion() -> None:
    text = "url: ${URL:-http://a:1}\ninputs: [{type: stdin, labels: {env: '${ENV}'}}]"
    cfg = load_config(text=text, environ={
        "ENV": "prod", "SLUICEWAY_AGENT__QUEUE__WHEN_FULL": "drop",
        "SLUICEWAY_AGENT__BATCH__MAX_LINES": "50"})
    assert cfg.url == "http://a:1"
    assert cfg.inputs[0].labels == {"env": "prod"}
    assert cfg.queue.when_full == "drop" and cfg.batch.max_lines == 50


def test_static_labels_and_label_map() -> None:
    text = """url: http://x
inputs: [{type: stdin, pipeline: [{static_labels: {env: prod}}, {labels: {lvl: level}}]}]"""
    st, lab = load_config(text=text, environ={}).inputs[0].pipeline
    assert isinstance(st, StaticLabelsStage) and st.labels == {"env": "prod"}
    assert isinstance(lab, LabelsStage) and lab.fields == {"lvl": "level"}


@pytest.mark.parametrize(("text", "needle"), [
    ("url: ftp://x\ninputs: [{type: stdin}]", "url must start with http"),
    ("url: http://x\ninputs: []", "inputs"),
    ("url: http://x\nqueue: {when_full: explode}\ninputs: [{type: stdin}]", "queue.when_full"),
    ("url: http://x\nqueue: {max_bytes: lots}\ninputs: [{type: stdin}]", "invalid size"),
    ("url: http://x\nbatch: {max_wait: soon}\ninputs: [{type: stdin}]", "invalid duration"),
    ("url: http://x\ninputs: [{type: file}]", "paths"),
    ("url: http://x\ninputs: [{type: tcp}]", "inputs.0"),
    ("url: http://x\ninputs: [{type: stdin, pipeline: [{jsn: {}}]}]", "unknown pipeline stage"),
    ("url: http://x\ninputs: [{type: stdin, labels: {'bad-name': x}}]", "invalid label name"),
    ("url: http://x\nbogus: 1\ninputs: [{type: stdin}]", "bogus"),
    ("url: [unclosed", "not valid YAML"),
    ("url: ${NOPE}\ninputs: [{type: stdin}]", "NOPE"),
])
def test_bad_configs_get_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as exc:
        load_config(text=text, environ={})
    assert needle in str(exc.value)


def test_cli_exits_2_on_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("url: http://x\nqueue: {when_full: sometimes}\ninputs: [{type: stdin}]\n")
    r = subprocess.run(sluiceway_cmd("agent", "-c", str(bad)), capture_output=True, cwd=REPO,
                       timeout=60)
    assert r.returncode == 2
    assert b"queue.when_full" in r.stderr
    r = subprocess.run(sluiceway_cmd("agent", "-c", str(tmp_path / "missing.yaml")),
                       capture_output=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and b"cannot read config" in r.stderr


def test_units() -> None:
    assert parse_size("16MiB") == 16 * 1024**2
    assert parse_size("1GB") == 10**9
    assert parse_size("512k") == 512_000
    assert parse_size(4096) == 4096
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration(2) == 2.0
    for bad in ("1 parsec", "", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_demo_agent_of_sluiceway_up_is_valid(tmp_path: Path) -> None:
    from sluiceway._up import DEMO_AGENT_YAML

    text = DEMO_AGENT_YAML.format(listen="127.0.0.1:3100", data=tmp_path)
    cfg = load_config(text=text, environ={})
    assert cfg.inputs[0].type == "demo"


def test_cli_exits_1_when_the_status_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(f"url: http://127.0.0.1:9\nlisten: 127.0.0.1:{port}\n"
                       f"data_dir: {tmp_path / 'ad'}\ninputs: [{{type: demo}}]\n")
        r = subprocess.run(sluiceway_cmd("agent", "-c", str(cfg)), capture_output=True,
                           cwd=REPO, timeout=60)
    assert r.returncode == 1 and b"Address already in use" in r.stderr


def test_report_url_off_unquoted_is_off() -> None:
    """YAML reads `off` as false; it means what it says."""
    from sluiceway.agent import load_config

    cfg = load_config(text="url: http://127.0.0.1:3100\nreport_url: off\n"
                           "inputs: [{type: stdin}]\n", environ={})
    assert cfg.report_url == "off"
