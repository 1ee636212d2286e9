"""`JetStreamBucket`: the object store seam over a NATS JetStream object store bucket
(`nats-py`, an optional dependency: `pip install 'sluiceway[cluster]'`), so a small
cluster needs NATS and nothing else. Works with nats-server 2.9.10 (Debian's).

A JetStream object store is one stream (`OBJ_<bucket>`): an object is its chunks
(messages on `$O.<bucket>.C.<nuid>`, a new nuid per version) and one metadata message
(`$O.<bucket>.M.<base64 name>`: size, chunk count, SHA-256) published after the chunks.
What that means for the contract, honestly:

- Every replica holds every object on its own disk (`replicas` copies of all the data).
  `put` returns after JetStream acked the metadata message: with `replicas: 3` a quorum
  has it; with 1 it is on one server, whose files are synced to disk on the server's own
  schedule (nats-server 2.9 syncs every 2 minutes), so a power cut of that machine can
  lose recent objects — a killed process does not.
- No range reads: `get_range` reads the whole object (a small LRU cache of whole objects,
  checked against the current version on every call, saves repeated reads).
- Listing reads every object's metadata message (one ordered consumer over the bucket's
  metadata), then filters by prefix: its cost grows with the number of objects.
- A reader that finds the chunks of the version it started on gone (replaced or deleted
  meanwhile) reads again, so it sees the old object or the new one, never a mix; every
  whole read is checked against the SHA-256 in the metadata.
- `delete` purges the metadata message (only up to its own sequence: a newer put stays)
  and then the chunks, leaving no tombstone, so listing does not slow down with deletes.
- A writer that dies between its chunks and its metadata leaves chunks no metadata names:
  `clean_interrupted` purges those older than `orphan_grace_s` (younger ones may belong to
  a put still running on another node).

nats-py is asyncio-only; the seam is called from threads, so each bucket runs one event
loop on its own thread and the calls wait for their coroutine there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sluiceway.store._objstore import (
    Data,
    NotFound,
    ObjectInfo,
    ObjectStore,
    check_key,
    check_prefix,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.object_store import ObjectStore as NatsObjectStore

log = logging.getLogger("sluiceway.store")
INSTALL_HINT = "the NATS backend needs the nats-py package: pip install 'sluiceway[cluster]'"
BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]+")
DEFAULT_CHUNK = 128 * 1024  # nats-py's and the Go client's default
_READ_ATTEMPTS = 50  # reads of an object that keeps being replaced while it is read
_MISSING_CHUNK_TRIES = 5  # reads of one version that find a chunk missing: damage
_CONCURRENCY = 8  # put_many / delete_many in flight at once
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Meta:
    name: str
    nuid: str
    size: int
    digest: str
    deleted: bool
    seq: int  # of the metadata message
    mtime: float  # when the server stored it


class _Replaced(Exception):
    """The chunks of the version being read are gone: read the metadata again."""



def close_loop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                      timeout: float) -> None:
    """Stop an event loop that runs in its own thread: every task still pending on it
    (a client's reader, a subscription's waiter) is cancelled and let finish first, so
    none is left to be destroyed pending by the garbage collector later (whose logging
    then runs inside whatever the process does at that moment)."""
    async def drain() -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if thread.is_alive() and not loop.is_closed():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
    if not thread.is_alive() and not loop.is_closed():
        loop.close()

class JetStreamBucket(ObjectStore):
    """Objects in the JetStream object store bucket `<name_prefix><bucket>` (created on
    first use with `replicas` copies, file storage). See the module docstring for what
    the object store can and cannot do."""

    ranged_reads = False  # get_range reads the whole object

    def __init__(self, servers: str | Sequence[str], bucket: str = "chunks", *,
                 name_prefix: str = "sluiceway-", replicas: int = 1, timeout_s: float = 10.0,
                 chunk_size: int = DEFAULT_CHUNK, cache_bytes: int = 64 << 20,
                 orphan_grace_s: float = 600.0, user: str | None = None,
                 password: str | None = None, token: str | None = None,
                 creds_file: str | None = None, nkey_seed_file: str | None = None,
                 tls_ca_file: str | None = None, tls_cert_file: str | None = None,
                 tls_key_file: str | None = None) -> None:
        try:
            import nats  # noqa: F401 - only to fail early with the hint
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        self.name = f"{name_prefix}{bucket}"
        if not BUCKET_NAME.fullmatch(self.name):
            raise ValueError(f"NATS object store bucket name {self.name!r} (name prefix + "
                             "bucket) may hold only letters, digits, '-' and '_'")
        if not 1 <= replicas <= 5:
            raise ValueError(f"NATS object store replicas must be 1 to 5, got {replicas}")
        if not 1024 <= chunk_size <= 1 << 20:
            raise ValueError(f"chunk size must be 1 KiB to 1 MiB, got {chunk_size}")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.servers = [s.strip() for url in self.servers for s in url.split(",") if s.strip()]
        if not self.servers:
            raise ValueError("no NATS server URL given")
        self.replicas = replicas
        self.stream = f"OBJ_{self.name}"
        self._timeout = timeout_s
        self._chunk = chunk_size
        self._grace = orphan_grace_s
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_max = cache_bytes
        self._cache_lock = threading.Lock()
        self._auth: dict[str, Any] = {
            k: v for k, v in (("user", user), ("password", password), ("token", token),
                              ("user_credentials", creds_file), ("nkeys_seed", nkey_seed_file))
            if v}
        if tls_ca_file or tls_cert_file:
            ctx = ssl.create_default_context(cafile=tls_ca_file)
            if tls_cert_file:
                ctx.load_cert_chain(tls_cert_file, tls_key_file)
            self._auth["tls"] = ctx
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"nats-{self.name}")
        self._thread.start()
        self._nc: Client | None = None
        self._closing = False
        try:
            self._js, self._obs = self._run(self._open(), "connect")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"JetStreamBucket({self.name} at {','.join(self.servers)})"

    # --- the event loop --------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T], op: str, key: str = "") -> T:
        """Run `coro` on the bucket's loop and wait; NATS failures become OSErrors."""
        import nats.errors
        import nats.js.errors

        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            what = f" {key!r}" if key else ""
            raise OSError(f"NATS object store {self.name}: {op}{what} failed: "
                          f"{type(exc).__name__}: {exc}") from exc

    async def _open(self) -> tuple[JetStreamContext, NatsObjectStore]:
        import nats
        from nats.js import api
        from nats.js.errors import BucketNotFoundError

        async def on_error(exc: Exception) -> None:  # each failed attempt: not worth a line
            log.debug("NATS object store %s: %s", self.name, exc)

        async def on_disconnected() -> None:
            if not self._closing:
                log.warning("NATS object store %s: disconnected, reconnecting",
                            self.name)

        async def on_reconnected() -> None:
            log.warning("NATS object store %s: reconnected", self.name)

        # Once connected the client reconnects for ever; the first connection gets the
        # timeout, so a start against a NATS that is not there ends with a clear error.
        try:
            self._nc = await asyncio.wait_for(nats.connect(
                self.servers, name="sluiceway", connect_timeout=max(1, int(self._timeout)),
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=1,
                error_cb=on_error, disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected, **self._auth), self._timeout)
        except (TimeoutError, OSError) as exc:
            raise OSError(f"cannot connect to NATS at {', '.join(self.servers)} within "
                          f"{self._timeout:g}s: {str(exc) or 'no answer'}") from None
        js = self._nc.jetstream(timeout=self._timeout)
        try:
            obs = await js.object_store(self.name)
        except BucketNotFoundError:
            obs = await js.create_object_store(self.name, config=api.ObjectStoreConfig(
                description="Sluiceway chunks", storage=api.StorageType.FILE,
                replicas=self.replicas))
        return js, obs

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._closing = True
        if self._nc is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._nc.close(), self._loop).result(
                    self._timeout)
        close_loop_thread(self._loop, self._thread, self._timeout)

    # --- metadata --------------------------------------------------------------------
    def _meta_subject(self, key: str) -> str:
        return f"$O.{self.name}.M.{base64.urlsafe_b64encode(key.encode()).decode()}"

    def _chunk_subject(self, nuid: str) -> str:
        return f"$O.{self.name}.C.{nuid}"

    @staticmethod
    def _parse(data: bytes | None, seq: int, mtime: float) -> _Meta:
        d = json.loads(data or b"{}")
        return _Meta(name=str(d.get("name", "")), nuid=str(d.get("nuid", "")),
                     size=int(d.get("size") or 0), digest=str(d.get("digest") or ""),
                     deleted=bool(d.get("deleted")), seq=seq, mtime=mtime)

    async def _meta(self, key: str) -> _Meta:
        """The current metadata of `key` (from the stream's leader); NotFound when there
        is no object (or only a tombstone another client left)."""
        from nats.js.errors import NotFoundError

        try:
            m = await self._js.get_last_msg(self.stream, self._meta_subject(key))
        except NotFoundError:
            raise NotFound(key) from None
        meta = self._parse(m.data, m.seq or 0, m.time.timestamp() if m.time else time.time())
        if meta.deleted:
            raise NotFound(key)
        return meta

    # --- reads -----------------------------------------------------------------------
    async def _read(self, key: str) -> tuple[_Meta, bytes]:
        missing: dict[str, int] = {}  # nuid -> reads that found a chunk of it missing
        for attempt in range(_READ_ATTEMPTS):
            meta = await self._meta(key)
            cached = self._cached(key, meta.nuid)
            if cached is not None:
                return meta, cached
            try:
                data = await self._read_chunks(meta)
            except _Replaced:
                # Replaced or deleted meanwhile (then the next metadata says so), or a
                # replica a little behind; a current version whose chunk stays missing
                # is damage.
                missing[meta.nuid] = missing.get(meta.nuid, 0) + 1
                if missing[meta.nuid] >= _MISSING_CHUNK_TRIES:
                    raise OSError(f"NATS object store {self.name}: a chunk of {key!r} is "
                                  "missing (the object is damaged)") from None
                await asyncio.sleep(min(0.002 * (attempt + 1), 0.05))
                continue
            self._remember(key, meta.nuid, data)
            return meta, data
        raise OSError(f"NATS object store {self.name}: {key!r} was replaced "
                      f"{_READ_ATTEMPTS} times while being read")

    async def _read_chunks(self, meta: _Meta) -> bytes:
        """The object's chunks, one direct get each (raw bytes, no consumer to make)."""
        from nats.js.errors import NotFoundError

        if meta.size == 0:
            return b""
        subject = self._chunk_subject(meta.nuid)
        parts: list[bytes] = []
        got, seq = 0, 0
        while got < meta.size:
            try:
                m = await self._js.get_msg(self.stream, seq=seq + 1, subject=subject,
                                           next=True, direct=True)
            except NotFoundError:
                raise _Replaced from None
            part = m.data or b""
            parts.append(part)
            got += len(part)
            seq = m.seq or seq + 1
        data = b"".join(parts)
        digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        if got != meta.size or digest != meta.digest:
            # Chunks purged under us can look like a short object too: only a version
            # that is still current and still reads wrong is damage.
            current = await self._meta(meta.name)
            if current.nuid != meta.nuid:
                raise _Replaced
            raise OSError(f"NATS object store {self.name}: {meta.name!r} does not match its "
                          f"metadata ({got} bytes, {meta.size} expected, or another digest)")
        return data

    def _cached(self, key: str, nuid: str) -> bytes | None:
        with self._cache_lock:
            data = self._cache.get((key, nuid))
            if data is not None:
                self._cache.move_to_end((key, nuid))
            return data

    def _remember(self, key: str, nuid: str, data: bytes) -> None:
        """Keep small whole objects for `get_range` (at most 1/8 of the cache each)."""
        if len(data) > self._cache_max // 8:
            return
        with self._cache_lock:
            if (key, nuid) in self._cache:
                return
            self._cache[(key, nuid)] = data
            self._cache_bytes += len(data)
            while self._cache_bytes > self._cache_max:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= len(old)

    def get(self, key: str) -> bytes:
        check_key(key)
        return self._run(self._read(key), "get", key)[1]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        check_key(key)
        if offset < 0 or length < 0:
            raise ValueError(f"get_range of {key!r}: offset {offset} and length {length} "
                             "must not be negative")
        # No range reads in a JetStream object store: the whole object, then a slice.
        return self._run(self._read(key), "get_range", key)[1][offset:offset + length]

    # --- writes ----------------------------------------------------------------------
    async def _put(self, key: str, data: bytes) -> None:
        from nats.js import api

        # nats-py publishes the chunks on a new nuid, then the metadata (a rollup of the
        # name's subject), then purges the old version's chunks.
        await self._obs.put(key, data, meta=api.ObjectMeta(
            name=key, options=api.ObjectMetaOptions(max_chunk_size=self._chunk)))

    def put(self, key: str, data: Data) -> None:
        check_key(key)
        self._run(self._put(key, bytes(data)), "put", key)

    def put_many(self, items: Sequence[tuple[str, Data]]) -> list[OSError | None]:
        for key, _ in items:
            check_key(key)
        return self._run(self._put_all([(k, bytes(d)) for k, d in items]), "put_many")

    async def _put_all(self, items: list[tuple[str, bytes]]) -> list[OSError | None]:
        import nats.errors
        import nats.js.errors

        sem = asyncio.Semaphore(_CONCURRENCY)

        async def one(key: str, data: bytes) -> OSError | None:
            async with sem:
                try:
                    await self._put(key, data)
                except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                    if isinstance(exc, OSError):
                        return exc
                    return OSError(f"NATS object store {self.name}: put {key!r} failed: "
                                   f"{type(exc).__name__}: {exc}")
                return None

        return list(await asyncio.gather(*(one(k, d) for k, d in items)))

    async def _delete(self, key: str) -> None:
        try:
            meta = await self._meta_any(key)
        except NotFound:
            return
        # The metadata first (the object is gone at once), only up to its own sequence
        # (a put that landed since stays), then the chunks.
        await self._js.purge_stream(self.stream, seq=meta.seq + 1,
                                    subject=self._meta_subject(key))
        if meta.nuid:
            await self._js.purge_stream(self.stream, subject=self._chunk_subject(meta.nuid))

    async def _meta_any(self, key: str) -> _Meta:
        """The last metadata message of `key`, tombstones included."""
        from nats.js.errors import NotFoundError

        try:
            m = await self._js.get_last_msg(self.stream, self._meta_subject(key))
        except NotFoundError:
            raise NotFound(key) from None
        return self._parse(m.data, m.seq or 0, 0.0)

    def delete(self, key: str) -> None:
        check_key(key)
        self._run(self._delete(key), "delete", key)

    def delete_many(self, keys: Iterable[str]) -> None:
        todo = sorted({check_key(k) for k in keys})
        if todo:
            self._run(self._delete_all(todo), "delete", todo[0])

    async def _delete_all(self, keys: list[str]) -> None:
        sem = asyncio.Semaphore(_CONCURRENCY)

        async def one(key: str) -> None:
            async with sem:
                await self._delete(key)

        await asyncio.gather(*(one(k) for k in keys))

    # --- listing ---------------------------------------------------------------------
    async def _scan(self) -> list[_Meta]:
        """Every metadata message of the bucket (the last per name), tombstones too: one
        ordered consumer delivering the last message of each metadata subject."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        subjects = f"$O.{self.name}.M.>"
        try:
            last = await self._js.get_last_msg(self.stream, subjects)
        except NotFoundError:
            return []  # no metadata at all
        # The listing is complete once the newest metadata message of when it began has
        # come (it is the last of its subject, or a newer one of that subject comes): while
        # puts go on, `num_pending` may not be 0 on any message for a long time.
        upto = last.seq or 0
        out: list[_Meta] = []
        done: asyncio.Future[None] = self._loop.create_future()

        async def on_msg(msg: Msg) -> None:
            md = msg.metadata
            out.append(self._parse(msg.data, md.sequence.stream, md.timestamp.timestamp()))
            if (md.num_pending == 0 or md.sequence.stream >= upto) and not done.done():
                done.set_result(None)

        sub = await self._js.subscribe(subjects, cb=on_msg, ordered_consumer=True,
                                       deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)
        try:
            seen = -1
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(done), self._timeout)
                    break
                except TimeoutError:
                    # Nothing came: every object was deleted since the check above, or
                    # the server is stuck (then it is a failure, not a short list).
                    if not out:
                        try:
                            await self._js.get_last_msg(self.stream, subjects)
                        except NotFoundError:
                            return []
                    if len(out) == seen:
                        raise
                    seen = len(out)
        finally:
            await sub.unsubscribe()
        return out

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        metas = self._run(self._scan(), "list", prefix)
        out = [ObjectInfo(m.name, m.size, m.mtime) for m in metas
               if not m.deleted and m.name.startswith(prefix)]
        out.sort(key=lambda o: o.key)
        return out

    # --- leftovers -------------------------------------------------------------------
    async def _clean(self) -> int:
        info = await self._js.stream_info(self.stream, subjects_filter=f"$O.{self.name}.C.>")
        subjects = info.state.subjects or {}
        if not subjects:
            return 0
        live = {m.nuid for m in await self._scan() if not m.deleted}
        n = 0
        now = time.time()
        for subject in subjects:
            if subject.rsplit(".", 1)[-1] in live:
                continue
            last = await self._js.get_last_msg(self.stream, subject)
            if last.time is not None and now - last.time.timestamp() < self._grace:
                continue  # may be a put still running elsewhere
            await self._js.purge_stream(self.stream, subject=subject)
            n += 1
        return n

    def check(self) -> None:
        """The bucket's stream answers (the connection and the bucket were made already)."""
        self._run(self._js.stream_info(self.stream), "check")

    def clean_interrupted(self) -> int:
        return self._run(self._clean(), "clean_interrupted")
