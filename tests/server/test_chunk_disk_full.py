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
import resource, sys, time
from pathlib import Path
from sluiceway.store import LocalDir
from sluiceway.store._index import IndexEntry, TenantIndex, Writer
from sluiceway.store._stream import ChunkRef

root = Path(sys.argv[1])
index = TenantIndex("fake", LocalDir(root), "t-fake", Writer())

def entries(k, n):
    return [IndexEntry(1, '{a="b"}', ChunkRef(f"chunks/2024-05-01/{k:04d}-{i}.chunk", i, i, 1,
                                              1, 1)) for i in range(n)]

index.add(entries(0, 10))
size = max(p.stat().st_size for p in root.rglob("*.idx"))
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 500, resource.RLIM_INFINITY))
_, failed, error = index.add(entries(1, 100))
print("failed:", error.strerror if error else None, len(failed))
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
index.add(entries(2, 1))
print(len(list(root.rglob("*.tmp"))), len(list(root.rglob("*.idx"))))
reader = TenantIndex("fake", LocalDir(root), "t-fake")
reader.sync()
print(reader.records_lost, *sorted(e.ref.path.split("/")[-1] for e in reader.live()))
"""


def test_index_object_that_does_not_fit_is_not_left_half_written(tmp_path: Path) -> None:
    """A failed index object write (file size limit, disk full) must leave no object and no
    temp file behind: it raises, the chunks it would have named are reported back (the
    flush keeps their heads), and the next write is read back with the first."""
    import subprocess
    import sys

    from tests.procs import REPO

    r = subprocess.run([sys.executable, "-c", INDEX_SCRIPT, str(tmp_path / "objects")],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "failed: File too large 100"
    assert out[1] == "0 2"
    assert out[2].split() == ["0", *sorted([f"0000-{i}.chunk" for i in range(10)]
                                           + ["0002-0.chunk"])]
