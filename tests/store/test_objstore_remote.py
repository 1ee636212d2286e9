"""What the remote object store backends do beyond the shared contract
(test_objstore_contract.py): S3's key prefix and failures, the JetStream object store's
leftovers, tombstones, damage, cache and a killed nats-server. Real servers throughout
(moto's S3 server, `nats-server -js`)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from pathlib import Path

import nats
import pytest

from sluiceway.store import JetStreamBucket, NotFound, S3Bucket
from tests.monitoring import require
from tests.objservers import (
    S3_KEY_ID,
    S3_REGION,
    S3_SECRET,
    MotoS3,
    NatsJetStream,
    nats_server_binary,
)
from tests.procs import free_port

_n = itertools.count()


def _s3(s3: MotoS3, bucket: str, prefix: str = "", **kw: object) -> S3Bucket:
    return S3Bucket(bucket, prefix=prefix, endpoint=s3.endpoint, region=S3_REGION,
                    access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET, **kw)  # type: ignore[arg-type]


def _js(srv: NatsJetStream, **kw: object) -> JetStreamBucket:
    return JetStreamBucket(srv.url, f"remote-{os.getpid()}-{next(_n)}", **kw)  # type: ignore[arg-type]


def _nats(srv: NatsJetStream, coro_fn):  # type: ignore[no-untyped-def]
    """Run `coro_fn(js)` with a connection of its own (what another client would do)."""
    async def main():  # type: ignore[no-untyped-def]
        nc = await nats.connect(srv.url)
        try:
            return await coro_fn(nc.jetstream())
        finally:
            await nc.close()
    return asyncio.run(main())


# --- S3 ---------------------------------------------------------------------------------

def test_s3_prefix_keeps_to_its_own_keys(moto_s3: MotoS3) -> None:
    """Every operation of a store with a prefix stays under it: objects beside it (one
    named like the prefix itself, one whose key starts with the prefix's text) are never
    listed, read, replaced or deleted."""
    bucket = moto_s3.create_bucket()
    whole = _s3(moto_s3, bucket)
    beside = {"tenants": b"1", "tenants-old/x": b"2", "other/tenants/y": b"3"}
    whole.put_many(list(beside.items()))
    mine = _s3(moto_s3, bucket, prefix="tenants/")
    mine.put_many([("t-a/chunks/1", b"a"), ("t-b/chunks/2", b"b")])
    assert [o.key for o in mine.list()] == ["t-a/chunks/1", "t-b/chunks/2"]
    assert [o.key for o in whole.list("tenants/")] == ["tenants/t-a/chunks/1",
                                                       "tenants/t-b/chunks/2"]
    mine.delete_many([o.key for o in mine.list()])
    with pytest.raises(NotFound):
        mine.get("tenants")  # "tenants/tenants": nothing
    assert {o.key: whole.get(o.key) for o in whole.list()} == beside
    mine.close()
    whole.close()


def test_s3_a_missing_bucket_is_a_failure_not_a_missing_object(moto_s3: MotoS3) -> None:
    """S3 answers 404 for a missing bucket too; the store must not read that as "this
    chunk is gone" (it would take it out of service), so it is a plain OSError."""
    b = _s3(moto_s3, "no-such-bucket")
    for op in (lambda: b.get("a/b"), lambda: b.get_range("a/b", 0, 1),
               lambda: b.put("a/b", b"x"), lambda: b.delete("a/b"), lambda: b.list("a/")):
        with pytest.raises(OSError) as info:
            op()
        assert not isinstance(info.value, FileNotFoundError), info.value
        assert "no-such-bucket" in str(info.value)


def test_s3_unreachable_endpoint_is_an_oserror() -> None:
    port = free_port()  # nothing listens there
    b = S3Bucket("b", endpoint=f"http://127.0.0.1:{port}", region=S3_REGION,
                 access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET, max_retries=0,
                 timeout_s=5)
    for op in (lambda: b.put("k", b"x"), lambda: b.get("k"), lambda: b.list()):
        with pytest.raises(OSError) as info:
            op()
        assert not isinstance(info.value, FileNotFoundError)
        assert f"127.0.0.1:{port}" in str(info.value)
    assert b.put_many([("k1", b"x"), ("k2", b"y")]) != [None, None]


# --- JetStream object store -------------------------------------------------------------

def test_jetstream_clean_interrupted_purges_orphan_chunks(nats_js: NatsJetStream) -> None:
    """A writer that died after its chunks and before its metadata left chunks nothing
    names: purged once older than the grace period, kept while younger (a put still
    running elsewhere), and live objects are never touched."""
    store = _js(nats_js, orphan_grace_s=3600)
    store.put("live/obj", b"x" * 300_000)
    orphan = f"$O.{store.name}.C.ORPHANNUID0000000001"

    async def leave_orphan(js):  # type: ignore[no-untyped-def]
        for _ in range(3):
            await js.publish(orphan, b"half of a dead writer's object")

    async def chunk_subjects(js):  # type: ignore[no-untyped-def]
        info = await js.stream_info(store.stream, subjects_filter=f"$O.{store.name}.C.>")
        return dict(info.state.subjects or {})

    _nats(nats_js, leave_orphan)
    assert orphan in _nats(nats_js, chunk_subjects)
    assert store.clean_interrupted() == 0  # younger than the grace period
    assert orphan in _nats(nats_js, chunk_subjects)
    store.close()
    store = JetStreamBucket(nats_js.url, store.name, name_prefix="", orphan_grace_s=0)
    assert store.clean_interrupted() == 1
    left = _nats(nats_js, chunk_subjects)
    assert orphan not in left and len(left) == 1  # the live object's chunks
    assert store.get("live/obj") == b"x" * 300_000
    assert store.clean_interrupted() == 0
    store.close()


def test_jetstream_delete_leaves_no_tombstone(nats_js: NatsJetStream) -> None:
    """A delete removes the metadata message (and the chunks) instead of leaving a
    tombstone, so a listing, which reads every metadata message, does not grow with
    deletes."""
    store = _js(nats_js)
    store.put_many([(f"d/{i}", b"z" * 200_000) for i in range(10)])
    store.delete_many([f"d/{i}" for i in range(10)])

    async def state(js):  # type: ignore[no-untyped-def]
        info = await js.stream_info(store.stream)
        return info.state.messages, info.state.bytes

    assert _nats(nats_js, state) == (0, 0)
    assert store.list() == []
    store.close()


def test_jetstream_delete_keeps_a_newer_put(nats_js: NatsJetStream) -> None:
    """The metadata is purged only up to the version the delete read: a put of the same
    name that lands after it stays (here the newer version is put by another client
    between the delete's read and its purge, simulated by purging with the old
    sequence)."""
    store = _js(nats_js)
    store.put("k", b"old")
    meta_subject = store._meta_subject("k")

    async def last_seq(js):  # type: ignore[no-untyped-def]
        return (await js.get_last_msg(store.stream, meta_subject)).seq

    old_seq = _nats(nats_js, last_seq)
    store.put("k", b"new")

    async def purge_old(js):  # type: ignore[no-untyped-def]
        await js.purge_stream(store.stream, seq=old_seq + 1, subject=meta_subject)

    _nats(nats_js, purge_old)  # what a delete that read the old version does
    assert store.get("k") == b"new"
    store.close()


def test_jetstream_get_range_cache_follows_new_versions(nats_js: NatsJetStream) -> None:
    """get_range serves repeated reads from its cache of whole objects, but checks the
    current version first: a replacement (same size) is read, never the cached one."""
    store = _js(nats_js)
    store.put("r", b"a" * 1000)
    assert store.get_range("r", 10, 5) == b"aaaaa"
    store.put("r", b"b" * 1000)
    assert store.get_range("r", 10, 5) == b"bbbbb"
    store.delete("r")
    with pytest.raises(NotFound):
        store.get_range("r", 10, 5)
    store.close()


def test_jetstream_a_missing_chunk_is_damage_not_a_hang(nats_js: NatsJetStream) -> None:
    """A chunk gone while its metadata stays (damage): the read fails with an OSError
    after a few tries, instead of waiting for ever or returning part of the object."""
    store = _js(nats_js)
    store.put("dmg", os.urandom(400_000))  # 4 chunks

    async def drop_second_chunk(js):  # type: ignore[no-untyped-def]
        meta = await js.get_last_msg(store.stream, store._meta_subject("dmg"))
        first = meta.seq - 4  # the chunks came just before their metadata
        await js.delete_msg(store.stream, first + 1)

    _nats(nats_js, drop_second_chunk)
    with pytest.raises(OSError, match="missing") as info:
        store.get("dmg")
    assert not isinstance(info.value, FileNotFoundError)
    assert [o.key for o in store.list()] == ["dmg"]
    store.close()


def test_jetstream_unreachable_server_is_a_clear_oserror() -> None:
    port = free_port()
    with pytest.raises(OSError, match=f"cannot connect to NATS at nats://127.0.0.1:{port}"):
        JetStreamBucket(f"nats://127.0.0.1:{port}", "x", timeout_s=2)


def test_jetstream_replicas_past_the_servers_is_a_clear_oserror(
        nats_js: NatsJetStream) -> None:
    with pytest.raises(OSError, match="replicas > 1 not supported"):
        _js(nats_js, replicas=3)


@pytest.mark.parametrize(("kw", "match"), [
    ({"name_prefix": "a.b-"}, "letters, digits"),
    ({"replicas": 0}, "replicas must be 1 to 5"),
    ({"chunk_size": 2 << 20}, "chunk size"),
])
def test_jetstream_bad_settings_are_refused(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JetStreamBucket("nats://127.0.0.1:1", "x", **kw)  # type: ignore[arg-type]


def test_jetstream_objects_survive_a_killed_nats_server(tmp_path: Path) -> None:
    """Acked puts survive SIGKILL of nats-server (the file store has them; a power cut
    is another matter, see the README); the client reconnects by itself and the same
    bucket object goes on working."""
    binary = nats_server_binary() or require("nats-server", "nats-server")
    srv = NatsJetStream(tmp_path / "n", binary)
    try:
        store = JetStreamBucket(srv.url, "killed", timeout_s=10)
        objects = {f"k/{i}": os.urandom(50_000 + i) for i in range(20)}
        assert store.put_many(list(objects.items())) == [None] * 20
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        srv = NatsJetStream(tmp_path / "n", binary, port=srv.port, monitor=srv.monitor)
        got = {}
        for key in objects:  # the first calls may run before the client reconnected
            for _ in range(100):
                try:
                    got[key] = store.get(key)
                    break
                except OSError:
                    time.sleep(0.1)
        assert got == objects
        store.put("after", b"restart")
        assert [o.key for o in store.list()] == sorted([*objects, "after"])
        store.close()
    finally:
        srv.stop()
