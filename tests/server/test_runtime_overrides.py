"""Per-tenant limits from Loki's runtime config (`runtime_config.file`, `overrides:`),
re-read without a restart; a bad file keeps the last good overrides and logs an error."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from sluiceway.server import ConfigError, load_config
from sluiceway.server._overrides import TenantLimits
from tests.inproc import InProcessServer
from tests.procs import ServerProcess


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # whole, as an operator's tooling writes it


def _limits(tmp_path: Path, text: str) -> TenantLimits:
    f = tmp_path / "runtime.yaml"
    _write(f, text)
    cfg = load_config(None, {"limits.max_global_streams_per_user": 100,
                             "runtime_config.file": str(f)})
    return TenantLimits(cfg.limits, cfg.runtime_config)


def test_overrides_are_per_tenant_on_top_of_the_config(tmp_path: Path) -> None:
    tl = _limits(tmp_path, "overrides:\n  a:\n    max_global_streams_per_user: 1\n"
                           "    per_stream_rate_limit: 1KB\n  b: {}\n")
    assert tl.load()
    assert tl.get("a").max_global_streams_per_user == 1
    assert tl.get("a").per_stream_rate_limit == 1024  # Loki's units: KB = 1024
    assert tl.get("b").max_global_streams_per_user == 100
    assert tl.get("other") is tl.defaults
    assert not tl.load()  # unchanged files: nothing to do


@pytest.mark.parametrize(("text", "message"), [
    ("overrides:\n  a:\n    max_global_stream_per_user: 1\n",
     "unknown key 'overrides.a.max_global_stream_per_user' "
     "(did you mean 'max_global_streams_per_user'?)"),
    ("overrides:\n  a:\n    max_line_size: lots\n", "overrides.a.max_line_size: invalid size"),
    ("overides: {}\n", "unknown key 'overides' (did you mean 'overrides'?)"),
    ("overrides: [\n", "is not valid YAML"),
    ("overrides:\n  - a\n", "overrides must map each tenant to its limits"),
])
def test_a_bad_file_at_start_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as exc:
        _limits(tmp_path, text).load()
    assert message in str(exc.value)


def test_loki_keys_without_meaning_here_are_a_warning(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    tl = _limits(tmp_path, "overrides:\n  a:\n    bloom_creation_enabled: true\n"
                           "    max_query_series: 7\nconfigs: {}\n")
    with caplog.at_level(logging.WARNING, "sluiceway.server"):
        tl.load()
    assert tl.get("a").max_query_series == 7
    assert "overrides.a.bloom_creation_enabled" in caplog.text and "configs" in caplog.text


def test_a_bad_version_keeps_the_last_good_one_and_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tl = _limits(tmp_path, "overrides:\n  a: {max_query_series: 7}\n")
    tl.load()
    f = tl.files[0]
    with caplog.at_level(logging.INFO, "sluiceway.server"):
        _write(f, "overrides:\n  a: {max_query_series: seven}\n")
        assert not tl.reload() and not tl.reload()
        assert tl.get("a").max_query_series == 7
        f.unlink()
        assert not tl.reload() and not tl.reload()
        assert tl.get("a").max_query_series == 7
        _write(f, "overrides:\n  a: {max_query_series: 9}\n")
        assert tl.reload()
    assert tl.get("a").max_query_series == 9
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # one per bad version, not one per period
    assert "keeping the overrides loaded before" in errors[0].getMessage()
    assert "reloaded" in caplog.text


def test_reads_over_several_tenants_take_the_smallest_limits(tmp_path: Path) -> None:
    f = tmp_path / "rt.yaml"
    _write(f, "overrides:\n  a: {max_entries_limit_per_query: 10, query_timeout: 5s}\n"
              "  b: {max_entries_limit_per_query: 20, query_timeout: 2m}\n")
    srv = InProcessServer(tmp_path / "data", **{"runtime_config.file": str(f),
                                                "querier.multi_tenant_queries_enabled": True})
    try:
        both = srv.ctx.read_limits(["a", "b"])
        assert (both.max_entries_limit_per_query, both.query_timeout) == (10, 120)
        r = srv.get("/loki/api/v1/query_range", params={"query": '{x="y"}', "limit": "11"},
                    headers={"X-Scope-OrgID": "a|b"})
        assert r.status_code == 400
        assert "(11 > 10)" in r.text
        ok = srv.get("/loki/api/v1/query_range", params={"query": '{x="y"}', "limit": "11"},
                     headers={"X-Scope-OrgID": "b"})
        assert ok.status_code == 200
    finally:
        srv.close()


def _push(srv: ServerProcess, tenant: str, stream: str) -> httpx.Response:
    body = orjson.dumps({"streams": [{"stream": {"app": "rt", "n": stream},
                                      "values": [[str(time.time_ns()), "line"]]}]})
    return httpx.post(f"{srv.url}/loki/api/v1/push", content=body, timeout=10, headers={
        "Content-Type": "application/json", "X-Scope-OrgID": tenant})


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_running_server_rereads_its_overrides(tmp_path: Path) -> None:
    rt = tmp_path / "runtime.yaml"
    _write(rt, "overrides:\n  a:\n    max_global_streams_per_user: 1\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"runtime_config:\n  file: {rt}\n  period: 100ms\n"
                   "limits_config:\n  max_global_streams_per_user: 100\n")
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    try:
        assert _push(srv, "a", "1").status_code == 204
        r = _push(srv, "a", "2")
        assert r.status_code == 429 and "user: 'a'" in r.text
        assert _push(srv, "b", "1").status_code == 204 and _push(srv, "b", "2").status_code == 204

        _write(rt, "overrides:\n  a:\n    max_global_streams_per_user: 3\n")
        n = iter(range(100, 10_000))
        _until(lambda: _push(srv, "a", str(next(n))).status_code == 204, "the new limit")

        _write(rt, "overrides: [\n")  # broken: the server keeps 3 and says so
        _until(lambda: "keeping the overrides loaded before" in srv.log(), "the error")
        assert _push(srv, "a", "3").status_code == 204  # the third of three
        assert _push(srv, "a", "4").status_code == 429
        assert httpx.get(f"{srv.url}/ready").status_code == 200
    finally:
        srv.stop()
