"""The object store seam: where chunk bytes live, by key.

`ObjectStore` is what every backend offers: whole objects put and read by key, byte
ranges, listing by prefix, deletion. `LocalDir` is the single-node backend (files under
one directory); a cluster adds other backends (a JetStream object store, S3) behind the
same calls, checked by the same contract suite (tests/store/test_objstore_contract.py).

The contract, for every backend:
- Keys are `/`-separated relative names (`tenants/t-a/chunks/2024-05-01/x.chunk`): no
  empty part, no `.` or `..`, no leading `/`, no NUL, no part of more than 255 bytes
  (UTF-8) and a last part of at most 240; a key never ends in `.tmp` (the suffix of
  writes in progress). Anything else is `InvalidKey` (a ValueError) before any I/O.
- `put` is atomic and durable: when it returns, the object survives a crash or a power
  cut, and a reader sees the old object or the new one, never a part of either.
  `put_many` is the same for many objects at once, sharing the syncs; each object
  succeeds or fails on its own (one result per item: None, or the OSError).
- `get` and `get_range` raise `NotFound` (a FileNotFoundError) when the key names no
  object. `get_range(key, offset, length)` is `get(key)[offset:offset + length]`: an
  offset at or past the end or a zero length gives b"".
- `delete` and `delete_many` are idempotent (no object: nothing to do) and durable.
- `list(prefix)` gives every object whose key starts with `prefix` (a string prefix, not
  a directory: `a/b` lists `a/b/c` and `a/bc`), sorted by key, never a write in progress.
- `ranged_reads` is False for a backend whose `get_range` reads the whole object anyway:
  a reader that needs several parts of an object then reads it once, whole.
- A key is never both an object and the start of other keys followed by `/` (`a` and
  `a/b`): callers do not make both (a file cannot be a directory too).
- Every failure of the backend itself (disk, network) is an OSError, so a caller that
  retries on OSError works with every backend.
- `clean_interrupted()` removes what writes interrupted by a crash left behind; the one
  owner of the store calls it once at start, before anything writes.
- `check()` makes one cheap request and raises OSError when the backend cannot be used;
  `close()` releases what the backend holds (connections, threads); nothing after it.

Backends: `LocalDir` here; `S3Bucket` (`_objstore_s3.py`, an S3-compatible bucket) and
`JetStreamBucket` (`_objstore_nats.py`, a NATS JetStream object store bucket), whose
client libraries are optional dependencies loaded when one is made.
"""

from __future__ import annotations

import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sluiceway.durable import (
    TMP_SUFFIX,
    atomic_write,
    ensure_dir,
    fsync_dir,
    remove_temp_files,
    write_files,
)

MAX_PART_BYTES = 255
# The last part leaves room for the temp suffix of a write in progress (".<8 hex>.tmp").
MAX_NAME_BYTES = 240

Data = bytes | memoryview


class NotFound(FileNotFoundError):
    """No object under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object {key!r}")
        self.key = key


class InvalidKey(ValueError):
    """A key no backend may take (it could leave the store's root, or is not portable)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int  # bytes
    mtime: float  # when it was last written, Unix seconds


# The keys the store makes (ASCII names whose parts do not start with a dot, short enough
# for every limit) pass with one match, without the checks below: a flush checks thousands.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")


def check_key(key: str) -> str:
    """`key` when every backend can hold it; InvalidKey says why not."""
    if isinstance(key, str) and len(key) <= MAX_NAME_BYTES and _PLAIN_KEY.fullmatch(key) \
            and not key.endswith(TMP_SUFFIX):
        return key
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"an object key must be a non-empty string, got {key!r}")
    if "\0" in key:
        raise InvalidKey(f"object key {key!r} holds a NUL character")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"object key {key!r} is not valid Unicode text") from None
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidKey(f"object key {key!r} has an empty, '.' or '..' part (keys are "
                             "relative, `/`-separated names)")
        if len(part.encode()) > MAX_PART_BYTES:
            raise InvalidKey(f"object key {key!r} has a part longer than {MAX_PART_BYTES} bytes")
    if len(parts[-1].encode()) > MAX_NAME_BYTES:
        raise InvalidKey(f"the last part of object key {key!r} is longer than "
                         f"{MAX_NAME_BYTES} bytes")
    if key.endswith(TMP_SUFFIX):
        raise InvalidKey(f"object key {key!r} ends in {TMP_SUFFIX!r}, the suffix of writes "
                         "in progress")
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix: empty, or a key's beginning (the last part may be cut anywhere and
    may end with `/`)."""
    if prefix == "":
        return prefix
    if "\0" in prefix or prefix.startswith("/") or not _is_utf8(prefix):
        raise InvalidKey(f"list prefix {prefix!r} is not the beginning of a key")
    head, _, _last = prefix.rpartition("/")
    if head:
        # The complete parts are directories of keys, never a key's last part: a part of
        # up to MAX_PART_BYTES (a tenant directory's name) is fine there.
        check_key(head + "/x")
    return prefix


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ObjectStore(ABC):
    """Objects by key: see the module's docstring for the contract every backend keeps."""

    # Whether `get_range` costs about the bytes it returns. False for a backend that
    # reads the whole object for it (a JetStream object store): a reader that needs
    # several parts of an object then reads it once, whole.
    ranged_reads: bool = True

    @abstractmethod
    def put(self, key: str, data: Data) -> None:
        """Store `data` under `key` (replacing any object there), atomically and durably."""

    def put_many(self, items: Sequence[tuple[str, Data]]) -> list[OSError | None]:
        """`put` for many objects, with the syncs shared where the backend can; one result
        per item, None when that object is in place and durable. A key that is not valid
        raises InvalidKey before anything is written."""
        for key, _ in items:
            check_key(key)
        out: list[OSError | None] = []
        for key, data in items:
            try:
                self.put(key, data)
                out.append(None)
            except OSError as exc:
                out.append(exc)
        return out

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object; NotFound when there is none."""

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer at the end of the object); NotFound when
        there is no object; ValueError for a negative offset or length."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object, durably; nothing to do when there is none."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """`delete` for many objects, with the syncs shared where the backend can."""
        for key in keys:
            self.delete(key)

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def clean_interrupted(self) -> int:
        """Remove what interrupted writes left; how many. Only the store's one owner calls
        it, once at start, before anything writes."""

    def check(self) -> None:  # noqa: B027 - a local directory is checked by the store
        """One cheap request that fails (OSError) when the backend cannot be used (no such
        bucket, refused credentials, nothing listening): for a clear error at start."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections and threads; the store is not used after this."""


class LocalDir(ObjectStore):
    """Objects as files under `root`: the key is the file's path below it.

    Writes go through `sluiceway.durable` (temp file, fsync, rename, fsync of the
    directory; `write_files` for batches). A write in progress is a `*.tmp` file next to
    its target, never listed; `clean_interrupted` removes those a crash left."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._prefix = os.path.join(os.fspath(self.root), "")  # "<root>/"

    def path(self, key: str) -> str:
        """The file of `key`."""
        return self._prefix + check_key(key)

    def put(self, key: str, data: Data) -> None:
        path = self.path(key)
        ensure_dir(os.path.dirname(path))
        atomic_write(path, data)

    def put_many(self, items: Sequence[tuple[str, Data]]) -> list[OSError | None]:
        # write_files makes the directories, writes every file, syncs once, renames, and
        # syncs each directory once.
        return write_files([(self.path(key), data) for key, data in items])

    def get(self, key: str) -> bytes:
        try:
            with open(self.path(key), "rb", buffering=0) as f:
                return f.readall()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"get_range of {key!r}: offset {offset} and length {length} "
                             "must not be negative")
        try:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key) from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise NotFound(key)
            # An object never changes in place (a put renames a new file over it), so
            # its size now is the size of the version this descriptor reads.
            length = min(length, max(0, info.st_size - offset))
            parts: list[bytes] = []
            while length > 0:
                part = os.pread(fd, length, offset)
                if not part:
                    break
                parts.append(part)
                offset += len(part)
                length -= len(part)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys: Iterable[str]) -> None:
        dirs: set[str] = set()
        for key in keys:
            path = self.path(key)
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            except PermissionError:
                if os.path.isdir(path):  # unlink(2) of a directory is EPERM on some systems
                    continue
                raise
            dirs.add(os.path.dirname(path))
        for d in sorted(dirs):
            fsync_dir(d)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        # Walk only below the directory that the prefix's complete parts name.
        head, _, _ = prefix.rpartition("/")
        out: list[ObjectInfo] = []
        cut = len(self._prefix)
        stack = [self._prefix + head if head else os.fspath(self.root)]
        seen: set[tuple[int, int]] = set()  # directories, in case a symlink loops
        while stack:
            d = stack.pop()
            try:
                st = os.stat(d)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                entries = list(os.scandir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                rel = e.path[cut:]
                try:
                    if e.is_dir():
                        if rel.startswith(prefix) or prefix.startswith(f"{rel}/"):
                            stack.append(e.path)
                        continue
                    if not rel.startswith(prefix) or e.name.endswith(TMP_SUFFIX):
                        continue
                    info = e.stat()
                except FileNotFoundError:  # deleted while listing
                    continue
                out.append(ObjectInfo(rel, info.st_size, info.st_mtime))
        out.sort(key=lambda o: o.key)
        return out

    def clean_interrupted(self) -> int:
        n = 0
        for d, _dirs, _files in os.walk(self.root):
            n += remove_temp_files(d)
        return n
