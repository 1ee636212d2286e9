"""The `ObjectStore` contract, run against every backend.

Every test takes the `make_store` fixture: a factory that gives a fresh, empty store of
one backend per call. It is parametrized over the backends: `LocalDir` (files under a
directory), `S3Bucket` (against moto's S3-compatible server, a fresh bucket and key prefix
per store, with objects outside the prefix that must never show) and `JetStreamBucket`
(against `nats-server -js`, a fresh bucket per store). A backend joins the suite by adding
one entry to `BACKENDS` (a name and a factory from a fresh temp directory and the test's
request, through which it gets its session's server) — every test then runs against it
too. Backend-specific behaviour (LocalDir's file layout, its temp files, its directory
syncs) is tested at the end, outside the contract; the remote backends' own behaviour is
in test_objstore_remote.py.

The contract itself is the docstring of `sluiceway/store/_objstore.py`: atomic, durable
put (a reader sees the old object or the new one, never part of one); get and byte
ranges with slice semantics; NotFound (a FileNotFoundError) for a missing key;
idempotent delete; list by string prefix, sorted by key, never a write in progress;
keys that are relative `/`-separated names, anything else refused before any I/O.
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from sluiceway.durable import TMP_SUFFIX
from sluiceway.store import (
    InvalidKey,
    JetStreamBucket,
    LocalDir,
    NotFound,
    ObjectInfo,
    ObjectStore,
    S3Bucket,
)
from tests.objservers import S3_KEY_ID, S3_REGION, S3_SECRET, MotoS3, NatsJetStream

MakeStore = Callable[[], ObjectStore]


def _local_dir(root: Path, _request: pytest.FixtureRequest) -> ObjectStore:
    return LocalDir(root)


def _s3(root: Path, request: pytest.FixtureRequest) -> ObjectStore:
    s3: MotoS3 = request.getfixturevalue("moto_s3")
    bucket = s3.create_bucket()
    # Objects beside the prefix: no operation of the store may see or touch them.
    outside = S3Bucket(bucket, endpoint=s3.endpoint, region=S3_REGION,
                       access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET)
    outside.put_many([("other/a", b"not mine"), ("store", b"not mine"),
                      ("store-other/x", b"not mine")])
    outside.close()
    return S3Bucket(bucket, prefix="store/", endpoint=s3.endpoint, region=S3_REGION,
                    access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET)


_nats_buckets = itertools.count()


def _jetstream(root: Path, request: pytest.FixtureRequest) -> ObjectStore:
    nats: NatsJetStream = request.getfixturevalue("nats_js")
    return JetStreamBucket(nats.url, f"contract-{next(_nats_buckets)}",
                           name_prefix=f"t{os.getpid()}-", orphan_grace_s=0.0)


# name -> factory(fresh empty directory, the test's request) -> a fresh, empty store.
BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], ObjectStore]] = {
    "LocalDir": _local_dir,
    "S3Bucket": _s3,
    "JetStreamBucket": _jetstream,
}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    factory = BACKENDS[request.param]
    counter = itertools.count()
    made: list[ObjectStore] = []

    def make() -> ObjectStore:
        d = tmp_path / f"store-{next(counter)}"
        d.mkdir()
        made.append(factory(d, request))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def store(make_store: MakeStore) -> ObjectStore:
    return make_store()


def _keys(infos: list[ObjectInfo]) -> list[str]:
    return [o.key for o in infos]


# --- put / get --------------------------------------------------------------------------

def test_put_get_round_trip(store: ObjectStore) -> None:
    store.put("a/b/c.chunk", b"hello")
    store.put("top", memoryview(b"from a view"))
    store.put("empty", b"")
    assert store.get("a/b/c.chunk") == b"hello"
    assert store.get("top") == b"from a view"
    assert store.get("empty") == b""


def test_overwrite_replaces_the_whole_object(store: ObjectStore) -> None:
    store.put("k", b"a long first version" * 100)
    store.put("k", b"short")
    assert store.get("k") == b"short"
    assert [(o.key, o.size) for o in store.list()] == [("k", 5)]


def test_binary_data_and_odd_but_valid_keys(store: ObjectStore) -> None:
    data = bytes(range(256)) * 10
    keys = ["a b", "ü/ß.chunk", "a..b", ".hidden", "d/.dot", "x" * 240, "y" * 255 + "/z",
            "-", "t-a/chunks/2024-05-01/00ff-1-ab.chunk"]
    for k in keys:
        store.put(k, data)
    for k in keys:
        assert store.get(k) == data
    assert _keys(store.list()) == sorted(keys)


def test_missing_key_is_not_found(store: ObjectStore) -> None:
    store.put("a/b", b"x")
    for key in ("nope", "a/nope", "a/b/c", "a", "x/y/z"):
        with pytest.raises(NotFound):
            store.get(key)
        with pytest.raises(NotFound):
            store.get_range(key, 0, 1)
        with pytest.raises(NotFound):
            store.get_range(key, 0, 0)
    # NotFound is what callers of file reads already catch.
    assert issubclass(NotFound, FileNotFoundError) and issubclass(NotFound, OSError)


# --- get_range --------------------------------------------------------------------------

@pytest.mark.parametrize(("offset", "length", "expect"), [
    (0, 10, b"0123456789"),
    (0, 4, b"0123"),
    (3, 4, b"3456"),
    (9, 1, b"9"),
    (10, 5, b""),  # offset at the end
    (11, 5, b""),  # offset past the end
    (1 << 40, 5, b""),
    (7, 100, b"789"),  # length past the end
    (0, 1 << 40, b"0123456789"),
    (5, 0, b""),  # zero length
    (0, 0, b""),
    (10, 0, b""),
])
def test_get_range(store: ObjectStore, offset: int, length: int, expect: bytes) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", offset, length) == expect


def test_get_range_of_an_empty_object(store: ObjectStore) -> None:
    store.put("e", b"")
    assert store.get_range("e", 0, 10) == b""
    assert store.get_range("e", 0, 0) == b""


def test_get_range_refuses_negative_numbers(store: ObjectStore) -> None:
    store.put("r", b"abc")
    with pytest.raises(ValueError):
        store.get_range("r", -1, 2)
    with pytest.raises(ValueError):
        store.get_range("r", 0, -2)


@given(data=st.binary(max_size=3000), offset=st.integers(0, 3100),
       length=st.integers(0, 3100))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_get_range_is_a_slice(store: ObjectStore, data: bytes, offset: int,
                              length: int) -> None:
    store.put("p/r", data)
    assert store.get_range("p/r", offset, length) == data[offset:offset + length]


# --- list -------------------------------------------------------------------------------

def test_list_by_prefix_sorted(store: ObjectStore) -> None:
    keys = ["b/2", "a/b/c", "a/bc", "a/b/d/e", "a/c", "b/10", "ab", "a-b", "c"]
    for i, k in enumerate(keys):
        store.put(k, b"x" * i)
    assert _keys(store.list()) == sorted(keys)
    assert _keys(store.list("")) == sorted(keys)
    assert _keys(store.list("a/")) == ["a/b/c", "a/b/d/e", "a/bc", "a/c"]
    assert _keys(store.list("a/b")) == ["a/b/c", "a/b/d/e", "a/bc"]  # a string prefix
    assert _keys(store.list("a/b/")) == ["a/b/c", "a/b/d/e"]
    assert _keys(store.list("a/b/d/")) == ["a/b/d/e"]
    assert _keys(store.list("a")) == ["a-b", "a/b/c", "a/b/d/e", "a/bc", "a/c", "ab"]
    assert _keys(store.list("b/1")) == ["b/10"]
    assert _keys(store.list("c")) == ["c"]
    assert store.list("nothing/") == []
    assert store.list("a/b/c/") == []
    assert store.list("zz") == []
    sizes = {o.key: o.size for o in store.list()}
    assert sizes == {k: i for i, k in enumerate(keys)}
    assert all(o.mtime > 0 for o in store.list())


def test_list_below_a_directory_of_the_longest_name(store: ObjectStore) -> None:
    """A directory part may be 255 bytes (a long tenant's directory), also as the last
    complete part of a list prefix."""
    d = "b-" + "x" * 253
    store.put(f"{d}/chunks/x", b"1")
    store.put(f"index/{d}/2024-05-01/y", b"2")
    assert _keys(store.list(f"{d}/")) == [f"{d}/chunks/x"]
    assert _keys(store.list(f"index/{d}/")) == [f"index/{d}/2024-05-01/y"]
    assert _keys(store.list(f"index/{d}")) == [f"index/{d}/2024-05-01/y"]


def test_list_after_delete_and_of_an_empty_store(store: ObjectStore) -> None:
    assert store.list() == []
    store.put("d/x", b"1")
    store.delete("d/x")
    assert store.list() == []
    assert store.list("d/") == []


def test_list_never_shows_a_write_in_progress(store: ObjectStore) -> None:
    """While puts run in another thread, every key listed is one that was put whole."""
    done = threading.Event()
    put: set[str] = set()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(150):
                key = f"w/{i % 7}/obj-{i}"
                store.put(key, os.urandom(20_000))
                put.add(key)
                if i % 10 == 9:
                    store.put_many([(f"w/m/{i}-{j}", b"m" * 100) for j in range(20)])
                    put.update(f"w/m/{i}-{j}" for j in range(20))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    listed: set[str] = set()
    sizes: set[int] = set()
    while not done.is_set():
        for o in store.list("w/"):
            listed.add(o.key)
            sizes.add(o.size)
    t.join()
    assert not errors, errors
    final = {o.key for o in store.list("w/")}
    assert final == put
    assert listed <= final, sorted(listed - final)[:5]  # no temp file, nothing else
    assert sizes <= {20_000, 100}, sizes  # only whole objects


# --- delete -----------------------------------------------------------------------------

def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("a/b", b"1")
    store.put("a/c", b"2")
    store.delete("a/b")
    store.delete("a/b")
    store.delete("never/was")
    store.delete("a")  # names no object (only the start of others)
    with pytest.raises(NotFound):
        store.get("a/b")
    assert _keys(store.list()) == ["a/c"]
    store.delete_many(["a/c", "a/c", "x/y", "a/b"])
    assert store.list() == []
    store.delete_many([])


# --- put_many ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 20, 100])  # sizes that take each path of a batch
def test_put_many(store: ObjectStore, n: int) -> None:
    items = [(f"chunks/day-{i % 3}/{i:04d}.chunk", os.urandom(i * 37)) for i in range(n)]
    assert store.put_many(items) == [None] * n
    for key, data in items:
        assert store.get(key) == data
    assert _keys(store.list("chunks/")) == sorted(k for k, _ in items)
    # Again, replacing them all.
    again = [(k, b"new " + k.encode()) for k, _ in items]
    assert store.put_many(again) == [None] * n
    assert all(store.get(k) == d for k, d in again)


def test_put_many_refuses_a_bad_key_before_writing_anything(store: ObjectStore) -> None:
    with pytest.raises(InvalidKey):
        store.put_many([("ok/1", b"1"), ("../escape", b"2"), ("ok/3", b"3")])
    assert store.list() == []


# --- concurrency ------------------------------------------------------------------------

def test_concurrent_put_and_get_see_old_or_new_never_part(store: ObjectStore) -> None:
    """Writers replace an object with versions of other sizes while readers read it whole
    and by range: each read is exactly one version."""
    versions = [bytes([65 + i]) * size for i, size in enumerate((700_000, 90_000, 1_300_000))]
    store.put("hot/obj", versions[0])
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def writer(offset: int) -> None:
        for i in range(40):
            store.put("hot/obj", versions[(i + offset) % len(versions)])
            if stop.is_set():
                return

    def reader() -> None:
        while not stop.is_set():
            whole = store.get("hot/obj")
            ranged = store.get_range("hot/obj", 0, 1 << 24)
            for got in (whole, ranged):
                if got not in versions:
                    bad.append(f"read {len(got)} bytes starting {got[:1]!r}, "
                               "not one whole version")
            reads[0] += 1

    writers = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not bad, bad[:5]
    assert reads[0] > 0
    assert store.get("hot/obj") in versions


# --- keys -------------------------------------------------------------------------------

BAD_KEYS = ["", "/abs", "/", "a//b", "a/", "//a", "..", "../x", "a/../b", "a/..", ".", "./a",
            "a/./b", "a\0b", "\0", "x" * 256 + "/y", "a/" + "y" * 241, "y" * 241, "a.tmp",
            "d/x.1234abcd.tmp", "bad\ud800surrogate"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused_before_any_io(store: ObjectStore, key: str) -> None:
    for op in (lambda: store.put(key, b"x"), lambda: store.put_many([(key, b"x")]),
               lambda: store.get(key), lambda: store.get_range(key, 0, 1),
               lambda: store.delete(key), lambda: store.delete_many([key])):
        with pytest.raises(InvalidKey):
            op()
    assert issubclass(InvalidKey, ValueError)
    assert store.list() == []


@pytest.mark.parametrize("prefix", ["/", "/a", "a//", "../", "a/../", "a\0", "./x"])
def test_invalid_list_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        store.list(prefix)


def test_keys_cannot_leave_the_store(store: ObjectStore, tmp_path: Path) -> None:
    """Nothing outside the store's own space is read, written or deleted, whatever the
    key (for LocalDir: nothing outside its root)."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    for key in ("../outside", "../../outside", str(outside), "a/../../outside"):
        with pytest.raises(InvalidKey):
            store.get(key)
        with pytest.raises(InvalidKey):
            store.put(key, b"overwritten")
        with pytest.raises(InvalidKey):
            store.delete(key)
    assert outside.read_bytes() == b"secret"


# --- model-based: any sequence of operations acts like a dict ---------------------------

_PART = st.sampled_from(["a", "b", "ab", "a.b", "-", "ü"])
_KEY = st.builds(lambda d1, d2, name: f"{d1}/{d2}/{name}.o", _PART, _PART, _PART)


class _Model(RuleBasedStateMachine):
    """Puts, batches, deletes and reads in any order, compared with a dict. Keys are
    `<dir>/<dir>/<name>.o`, so no key is also the directory of another."""

    make: MakeStore

    def __init__(self) -> None:
        super().__init__()
        self.store = self.make()
        self.model: dict[str, bytes] = {}

    keys = Bundle("keys")

    @rule(target=keys, key=_KEY)
    def new_key(self, key: str) -> str:
        return key

    @rule(key=keys, data=st.binary(max_size=200))
    def put(self, key: str, data: bytes) -> None:
        self.store.put(key, data)
        self.model[key] = data

    @rule(items=st.lists(st.tuples(_KEY, st.binary(max_size=50)), max_size=20,
                         unique_by=lambda kv: kv[0]))
    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        assert self.store.put_many(items) == [None] * len(items)
        self.model.update(items)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.model.pop(key, None)

    @rule(key=keys, offset=st.integers(0, 220), length=st.integers(0, 220))
    def read(self, key: str, offset: int, length: int) -> None:
        if key in self.model:
            assert self.store.get(key) == self.model[key]
            want = self.model[key][offset:offset + length]
            assert self.store.get_range(key, offset, length) == want
        else:
            with pytest.raises(NotFound):
                self.store.get(key)

    @rule(key=keys, cut=st.integers(0, 12))
    def list_prefix(self, key: str, cut: int) -> None:
        prefix = key[:cut]
        got = [(o.key, o.size) for o in self.store.list(prefix)]
        assert got == sorted((k, len(v)) for k, v in self.model.items()
                             if k.startswith(prefix))

    @invariant()
    def listing_matches(self) -> None:
        assert [o.key for o in self.store.list()] == sorted(self.model)


def test_operations_act_like_a_dict(make_store: MakeStore) -> None:
    machine = type("Machine", (_Model,), {"make": staticmethod(make_store)})
    test = machine.TestCase
    test.settings = settings(max_examples=20, stateful_step_count=25, deadline=None)
    test().runTest()


# --- LocalDir only (not part of the contract) -------------------------------------------

def test_local_dir_keys_are_paths_below_the_root(tmp_path: Path) -> None:
    """The key is the file's path below the root: a data dir written before the object
    store existed is read as it is."""
    f = tmp_path / "tenants" / "t-a" / "chunks" / "2024-05-01" / "00ff-1-ab.chunk"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"old file")
    store = LocalDir(tmp_path)
    key = "tenants/t-a/chunks/2024-05-01/00ff-1-ab.chunk"
    assert _keys(store.list("tenants/t-a/chunks/")) == [key]
    assert store.get(key) == b"old file"
    store.put("tenants/t-a/chunks/2024-05-02/x.chunk", b"new")
    assert (tmp_path / "tenants/t-a/chunks/2024-05-02/x.chunk").read_bytes() == b"new"


def test_local_dir_cleans_what_a_crash_left_and_never_lists_it(tmp_path: Path) -> None:
    store = LocalDir(tmp_path)
    store.put("d/e/obj", b"kept")
    leftovers = [tmp_path / "d" / "e" / f"obj.1234abcd{TMP_SUFFIX}",
                 tmp_path / "d" / f"other.deadbeef{TMP_SUFFIX}", tmp_path / f"x{TMP_SUFFIX}"]
    for p in leftovers:
        p.write_bytes(b"half a write")
    assert _keys(store.list()) == ["d/e/obj"]
    assert store.clean_interrupted() == len(leftovers)
    assert not any(p.exists() for p in leftovers)
    assert store.get("d/e/obj") == b"kept"
    assert store.clean_interrupted() == 0


def test_local_dir_failed_put_leaves_nothing(tmp_path: Path) -> None:
    store = LocalDir(tmp_path)
    store.put("a/b", b"x")
    with pytest.raises(OSError):
        store.put("a/b/c", b"y")  # a/b is an object, not a directory
    results = store.put_many([("ok", b"1"), ("a/b/d", b"2")])
    assert results[0] is None and isinstance(results[1], OSError)
    assert _keys(store.list()) == ["a/b", "ok"]
    assert not [p for p in tmp_path.rglob(f"*{TMP_SUFFIX}")]


@pytest.fixture
def synced_dirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The directories fsynced, in order (regular files are left out)."""
    out: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            out.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", fsync)
    yield out


def test_local_dir_put_and_delete_sync_the_directory(tmp_path: Path,
                                                     synced_dirs: list[str]) -> None:
    store = LocalDir(tmp_path)
    store.put("x/y/obj", b"1")
    assert str((tmp_path / "x" / "y").resolve()) in synced_dirs
    synced_dirs.clear()
    store.delete_many(["x/y/obj", "x/z/none"])
    assert synced_dirs == [str((tmp_path / "x" / "y").resolve())]
    synced_dirs.clear()
    store.delete("x/y/obj")  # nothing there: nothing to sync
    assert synced_dirs == []


@pytest.mark.parametrize("root", [".", "sub", "./sub/", "sub/../sub"])
def test_local_dir_with_a_relative_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        root: str) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalDir(root)
    store.put("a/b", b"x")
    assert store.get("a/b") == b"x"
    assert _keys(store.list("a/")) == ["a/b"]
    assert _keys(store.list()) == ["a/b"]
