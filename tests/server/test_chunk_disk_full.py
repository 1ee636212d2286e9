"""Chunks that cannot be written (disk full): the server backs off instead of spinning,
says so once, leaves no temp files, answers /flush truthfully, and loses nothing.

The server runs with a file size limit (RLIMIT_FSIZE, soft limit only) that the WAL's
small segments stay under but one big incompressible chunk does not; the test lifts the
limit on the live process (prlimit) as an operator would free space."""

from __future__ import annotations

import base64
import os
import re
import resource
import time
from pathlib import Path

import httpx
import orjson

from tests.procs import ServerProcess

LIMIT = 2 << 20


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


def _push(srv: ServerProcess, job: str, lines: list[str], base: int) -> int:
    body = orjson.dumps({"streams": [{"stream": {"job": job}, "values": [
        [str(base + i), line] for i, line in enumerate(lines)]}]})
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body,
                   headers={"Content-Type": "application/json"}, timeout=30)
    return r.status_code


def _lines(srv: ServerProcess, job: str, since: int) -> list[str]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
        "query": f'{{job="{job}"}}', "limit": "5000", "start": str(since)})
    return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]


def _metric(srv: ServerProcess, name: str) -> float:
    text = httpx.get(f"{srv.url}/metrics", timeout=30).text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _wait_for(cond: object, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not seen in {timeout}s: {what}")


def test_chunk_write_failure_backs_off_and_recovers(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("storage:\n  wal_segment_size: 512KiB\n  chunk_target_size: 64MiB\n"
                   "  compaction_enabled: false\n  flush_check_period: 1s\n")
    srv = ServerProcess(tmp_path / "data", config=cfg, preexec=_limit_file_size).start()
    base = time.time_ns() - 10**10
    try:
        # ~3 MB of random text in one stream: its chunk is larger than the file limit;
        # the WAL, in 512 KiB segments, is not.
        big = [base64.b64encode(os.urandom(3000)).decode() for _ in range(1000)]
        for k in range(0, len(big), 100):
            assert _push(srv, "big", big[k:k + 100], base + k) == 204
        small = [f"small line {i}" for i in range(50)]
        assert _push(srv, "small", small, base) == 204

        r = httpx.post(f"{srv.url}/flush", timeout=60)
        assert r.status_code == 503, r.text
        assert "chunk" in r.text
        # Give a busy loop time to show itself; with back-off only a handful of attempts
        # happen in this window (the old flusher retried thousands of times).
        time.sleep(3)
        failures = _metric(srv, "sluiceway_chunk_flush_failures_total")
        log = srv.log()
        assert 1 <= failures <= 8, failures
        assert log.count("Traceback") == 0, log[-3000:]
        assert len(re.findall(r"writing chunks failed", log)) == 1, log[-3000:]
        assert not list((tmp_path / "data").rglob("*.tmp"))
        assert _metric(srv, "sluiceway_chunk_flush_failing") == 1
        # the small stream's chunk was written; the big one waits in memory and the WAL
        assert len(list((tmp_path / "data").rglob("*.chunk"))) == 1
        assert httpx.post(f"{srv.url}/flush", timeout=60).status_code == 503
        assert sorted(_lines(srv, "big", base - 1)) == sorted(big)

        assert srv.proc is not None
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        # the back-off retry recovers on its own, and says so once
        _wait_for(lambda: "writing chunks works again" in srv.log(), "recovery log line")
        assert httpx.post(f"{srv.url}/flush", timeout=60).status_code == 204
        assert _metric(srv, "sluiceway_chunk_flush_failing") == 0
        log = srv.log()
        assert len(re.findall(r"writing chunks failed", log)) == 1
        assert log.count("Traceback") == 0
        assert not list((tmp_path / "data").rglob("*.tmp"))
        assert sorted(_lines(srv, "big", base - 1)) == sorted(big)
        assert sorted(_lines(srv, "small", base - 1)) == sorted(small)
        srv.kill()
        srv.preexec = None
        srv.start()
        assert sorted(_lines(srv, "big", base - 1)) == sorted(big)
        assert sorted(_lines(srv, "small", base - 1)) == sorted(small)
    finally:
        srv.stop()


INDEX_SCRIPT = """
import resource, sys
from pathlib import Path
from sluiceway.store._index import IndexLog, read_index
path = Path(sys.argv[1])
log = IndexLog(path)
log.append([{"op": "add", "n": i, "pad": "x" * 100} for i in range(10)])
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 500, resource.RLIM_INFINITY))
try:
    log.append([{"op": "add", "n": 100 + i, "pad": "y" * 100} for i in range(10)])
    print("append did not fail")
except OSError as exc:
    print("failed:", exc.strerror)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
log.append([{"op": "add", "n": 200}])
log.close()
print(*[r["n"] for r in read_index(path).records])
"""


def test_index_append_that_does_not_fit_is_cut_back(tmp_path: Path) -> None:
    """A failed append (file size limit, disk full) must not leave a torn record in
    front of the next one: it raises, and the log is cut back to where it was."""
    import subprocess
    import sys

    from tests.procs import REPO

    r = subprocess.run([sys.executable, "-c", INDEX_SCRIPT, str(tmp_path / "index.log")],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "failed: File too large"
    assert out[1].split() == [*map(str, range(10)), "200"]
