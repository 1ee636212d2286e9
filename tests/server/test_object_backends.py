"""The single-node server with its chunks and index objects in S3 (moto's server) or a
NATS JetStream object store (`nats-server -js`), the WAL staying in the data dir; and the
clear exit 2 for an object store that cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from sluiceway.store import JetStreamBucket, ObjectStore, S3Bucket
from tests.objservers import S3_KEY_ID, S3_REGION, S3_SECRET, MotoS3, NatsJetStream
from tests.procs import REPO, ServerProcess, free_port


def _s3_setup(request: pytest.FixtureRequest) -> tuple[dict[str, object], ObjectStore]:
    s3: MotoS3 = request.getfixturevalue("moto_s3")
    bucket = s3.create_bucket()
    endpoint = s3.endpoint.removeprefix("http://")
    cfg = {"backend": "s3", "s3": {
        "bucketnames": bucket, "endpoint": endpoint, "insecure": True, "region": S3_REGION,
        "access_key_id": S3_KEY_ID, "secret_access_key": S3_SECRET,
        "storage_prefix": "logs/single"}}
    return cfg, S3Bucket(bucket, prefix="logs/single", endpoint=s3.endpoint,
                         region=S3_REGION, access_key_id=S3_KEY_ID,
                         secret_access_key=S3_SECRET)


def _nats_setup(request: pytest.FixtureRequest) -> tuple[dict[str, object], ObjectStore]:
    nats: NatsJetStream = request.getfixturevalue("nats_js")
    prefix = f"srv{os.getpid()}-{time.monotonic_ns() % 10**9}-"
    cfg = {"backend": "nats", "nats": {"url": nats.url, "name_prefix": prefix}}
    return cfg, JetStreamBucket(nats.url, "chunks", name_prefix=prefix)


SETUPS: dict[str, Callable[[pytest.FixtureRequest],
                           tuple[dict[str, object], ObjectStore]]] = {
    "s3": _s3_setup, "nats": _nats_setup}


def _push(srv: ServerProcess, base: int, n: int) -> list[str]:
    lines = [f"line {i} " + "x" * 60 for i in range(n)]
    body = orjson.dumps({"streams": [{"stream": {"job": "objs"},
                                      "values": [[str(base + i), ln]
                                                 for i, ln in enumerate(lines)]}]})
    r = httpx.post(f"{srv.url}/loki/api/v1/push", content=body, timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    return lines


def _query(srv: ServerProcess, base: int) -> list[str]:
    r = httpx.get(f"{srv.url}/loki/api/v1/query_range", timeout=30, params={
        "query": '{job="objs"}', "start": str(base - 1), "end": str(base + 10**12),
        "limit": "5000", "direction": "forward"})
    assert r.status_code == 200, r.text
    return [v[1] for s in r.json()["data"]["result"] for v in s["values"]]


@pytest.mark.parametrize("backend", sorted(SETUPS))
def test_chunks_live_in_the_object_store(tmp_path: Path, request: pytest.FixtureRequest,
                                         backend: str) -> None:
    """Lines pushed and flushed are chunks and index objects in the bucket (none in the
    data dir), read back by queries, and again after a restart, when only the WAL (and
    checkpoint) is local."""
    section, objects = SETUPS[backend](request)
    cfg = tmp_path / "sluiceway.yaml"
    cfg.write_text(yaml.safe_dump({"storage": section}))
    base = time.time_ns() - 600 * 10**9
    srv = ServerProcess(tmp_path / "data", config=cfg).start()
    try:
        first = _push(srv, base, 500)
        assert httpx.post(f"{srv.url}/flush", timeout=60).status_code == 204
        keys = [o.key for o in objects.list()]
        chunks = [k for k in keys if k.startswith("t-fake/chunks/") and k.endswith(".chunk")]
        index = [k for k in keys if k.startswith("index/t-fake/") and k.endswith(".idx")]
        assert chunks and index and len(chunks) + len(index) == len(keys), keys
        assert not list((tmp_path / "data").rglob("*.chunk"))
        assert not list((tmp_path / "data").rglob("*.idx"))
        assert not list((tmp_path / "data").rglob("index.log"))
        more = _push(srv, base + 10**6, 300)  # stays in the WAL and the head
        assert _query(srv, base) == first + more
        assert "chunks in" in srv.log() and "Traceback" not in srv.log()
    finally:
        srv.stop()
    # The final flush wrote the rest; a restart reads everything from the bucket.
    assert not list((tmp_path / "data").rglob("*.chunk"))
    srv = ServerProcess(tmp_path / "data", config=cfg, port=srv.port).start()
    try:
        assert _query(srv, base) == first + more
    finally:
        srv.stop()
        objects.close()


@pytest.mark.parametrize("backend", sorted(SETUPS))
def test_a_second_server_on_the_same_bucket_serves_what_the_first_flushed(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    """Two server processes, each with its own data dir (WAL), on one bucket: what one
    flushes, the other serves within its `index_sync_period`, without a restart, once."""
    section, objects = SETUPS[backend](request)
    objects.close()
    writer_cfg, reader_cfg = tmp_path / "w.yaml", tmp_path / "r.yaml"
    writer_cfg.write_text(yaml.safe_dump({"storage": {**section, "index_sync_period": "0s"}}))
    reader_cfg.write_text(yaml.safe_dump({"storage": {
        **section, "index_sync_period": "300ms", "compaction_enabled": False}}))
    base = time.time_ns() - 600 * 10**9
    writer = ServerProcess(tmp_path / "w", config=writer_cfg).start()
    reader = ServerProcess(tmp_path / "r", config=reader_cfg).start()
    try:
        assert _query(reader, base) == []
        first = _push(writer, base, 300)
        assert httpx.post(f"{writer.url}/flush", timeout=60).status_code == 204
        deadline = time.monotonic() + 60
        while _query(reader, base) != first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _query(reader, base) == first
        more = _push(writer, base + 10**6, 200)
        assert _query(reader, base) == first  # in the writer's head: not in the bucket yet
        assert httpx.post(f"{writer.url}/flush", timeout=60).status_code == 204
        deadline = time.monotonic() + 60
        while _query(reader, base) != first + more and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _query(reader, base) == first + more
    finally:
        reader.stop()
        writer.stop()
    assert "Traceback" not in reader.log() + writer.log()


def _run(cfg: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluiceway", "server", "-c", str(cfg), "--data-dir",
         str(tmp / "data"), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize(("storage", "expect"), [
    ({"backend": "s3"}, "backend is s3 but there is no storage.s3 section"),
    ({"backend": "s3", "s3": {"bucketnames": "a, b"}}, "exactly one bucket"),
    ({"backend": "s3", "s3": {"bucketnames": "a", "bucket": "a"}},
     "unknown key 'storage.s3.bucket'"),
    ({"backend": "nats", "nats": {"name_prefix": "a.b"}}, "letters, digits"),
    ({"backend": "gcs"}, "storage.backend: Input should be 'filesystem', 's3' or 'nats'"),
])
def test_bad_object_store_config_is_exit_2(tmp_path: Path, storage: dict[str, object],
                                            expect: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"storage": storage}))
    r = _run(cfg, tmp_path)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr


def test_object_store_that_cannot_be_used_is_exit_2(tmp_path: Path, moto_s3: MotoS3) -> None:
    """A bucket that does not exist, or a NATS that is not there: the server says which
    and exits 2 before it listens, instead of failing its first flush."""
    cfg = tmp_path / "s3.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"backend": "s3", "s3": {
        "bucketnames": "no-such-bucket", "endpoint": moto_s3.endpoint, "region": S3_REGION,
        "access_key_id": S3_KEY_ID, "secret_access_key": S3_SECRET}}}))
    r = _run(cfg, tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cannot be used" in r.stderr and "no-such-bucket" in r.stderr
    assert "Traceback" not in r.stderr
    port = free_port()
    cfg.write_text(yaml.safe_dump({"storage": {"backend": "nats", "nats": {
        "url": f"nats://127.0.0.1:{port}", "timeout": "2s"}}}))
    r = _run(cfg, tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"cannot connect to NATS at nats://127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr
