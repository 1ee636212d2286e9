"""The server refuses bad setups with a clear message and exit code 2, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import REPO, ServerProcess, free_port


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluiceway", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_help_lists_options() -> None:
    r = _run("server", "--help")
    assert r.returncode == 0
    for opt in ("--listen", "--data-dir", "--config"):
        assert opt in r.stdout


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("storage:\n  chunk_target_size: lots\n  bogus: 1\n")
    r = _run("server", "-c", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "chunk_target_size" in r.stderr and "bogus" in r.stderr
    assert "Traceback" not in r.stderr
    cfg.write_text("server: [unclosed\n")
    r = _run("server", "-c", str(cfg))
    assert r.returncode == 2 and "not valid YAML" in r.stderr and "Traceback" not in r.stderr


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = _run("server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "already in use" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_data_dir_is_a_clear_error_nonroot(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    r = _run("server", "--data-dir", str(d / "x"), "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 2 and "not usable" in r.stderr


def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    r = _run("server", "--data-dir", str(f), "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 2 and "not usable" in r.stderr and "Traceback" not in r.stderr


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "FORMAT").write_text('{"format": "sluiceway-store", "version": 99}')
    r = _run("server", "--data-dir", str(d), "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 2 and "version 99" in r.stderr and "Traceback" not in r.stderr


def test_torn_wal_tail_is_skipped_with_a_warning(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    import time

    import httpx
    import orjson

    now = time.time_ns()
    body = orjson.dumps({"streams": [{"stream": {"job": "torn"},
                                      "values": [[str(now - i), f"line {i}"] for i in range(10)]}]})
    assert httpx.post(f"{srv.url}/loki/api/v1/push", content=body,
                      headers={"Content-Type": "application/json"}).status_code == 204
    srv.kill()
    seg = sorted((tmp_path / "data" / "wal").glob("*.wal"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34")  # a frame header promising more than exists
    srv.start()
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", params={"query": '{job="torn"}'})
    srv.stop()
    assert len(r.json()["data"]["result"][0]["values"]) == 10
    assert "torn record" in srv.log()


def test_second_server_on_one_data_dir_exits_2(tmp_path: Path) -> None:
    import httpx

    first = ServerProcess(tmp_path / "data").start()
    try:
        assert first.proc is not None
        r = _run("server", "--data-dir", str(tmp_path / "data"),
                 "--listen", f"127.0.0.1:{free_port()}", timeout=120)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert str(tmp_path / "data") in lines[0] and f"pid {first.proc.pid}" in lines[0]
        assert httpx.get(f"{first.url}/ready").status_code == 200  # the first one runs on
    finally:
        first.stop()
    # a stopped owner (and a killed one: the kernel drops its lock) frees the directory
    second = ServerProcess(tmp_path / "data").start()
    second.kill()
    second.start()
    second.stop()
