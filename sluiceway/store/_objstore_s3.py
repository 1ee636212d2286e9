"""`S3Bucket`: the object store seam over an S3-compatible bucket (AWS S3, MinIO, Ceph
RGW, ...), through `obstore` (Python bindings of the Apache Arrow project's Rust
`object_store` crate: request signing, retries, the credential chain). `obstore` is an
optional dependency (`pip install 'sluiceway[s3]'`), imported on first use.

How the contract maps:
- `put` is one PUT (never a multipart upload, so an interrupted write leaves nothing: S3
  makes an object visible only whole, and `clean_interrupted` has nothing to do);
  durable once S3 answered, as S3 defines it. `put_many` runs the PUTs on a few threads.
- `get_range` is a ranged GET. S3 answers 416 for a range that starts at or past the end
  (an empty object included); that case is read as the contract's empty slice after a
  HEAD tells the object's size.
- `list(prefix)` lists the "directory" of the prefix's complete parts (S3's listing is by
  path segment in `object_store`) and keeps the keys that start with the string prefix.
- Failures of the service are OSErrors (`NotFound` for a missing object,
  `PermissionError` for refused credentials).
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sluiceway.store._objstore import (
    Data,
    NotFound,
    ObjectInfo,
    ObjectStore,
    check_key,
    check_prefix,
)

if TYPE_CHECKING:
    from obstore.store import S3Store

INSTALL_HINT = "the S3 backend needs the obstore package: pip install 'sluiceway[s3]'"


def _obstore_missing() -> ImportError:
    return ImportError(INSTALL_HINT)


class S3Bucket(ObjectStore):
    """Objects in one bucket of an S3-compatible service, under an optional key prefix.

    Credentials: `access_key_id` / `secret_access_key` (and `session_token`) when given,
    else the standard chain of `object_store`: the `AWS_*` environment variables, a web
    identity token (EKS), the ECS task role, then the EC2 instance metadata service. The
    shared files (`~/.aws/credentials` profiles) are not read. `endpoint` and `region`
    likewise fall back to `AWS_ENDPOINT_URL` / `AWS_REGION`."""

    def __init__(self, bucket: str, *, prefix: str = "", endpoint: str | None = None,
                 region: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, session_token: str | None = None,
                 force_path_style: bool = True, timeout_s: float = 30.0,
                 max_retries: int = 3, concurrency: int = 8) -> None:
        try:
            from obstore.store import S3Store
        except ImportError:
            raise _obstore_missing() from None
        if not bucket:
            raise ValueError("an S3 bucket name is needed")
        prefix = prefix.strip("/")
        if prefix:
            try:
                check_key(prefix)
            except ValueError as exc:
                raise ValueError(f"S3 key prefix {prefix!r}: {exc}") from None
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint or ""
        config: dict[str, str | bool] = {"virtual_hosted_style_request": not force_path_style}
        if endpoint:
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        if session_token:
            config["session_token"] = session_token
        timeout = _dt.timedelta(seconds=timeout_s)
        self._store: S3Store = S3Store(
            bucket, prefix=prefix or None, config=config,  # type: ignore[arg-type]
            client_options={"allow_http": True, "timeout": timeout,
                            "connect_timeout": _dt.timedelta(seconds=min(timeout_s, 10.0))},
            retry_config={"max_retries": max_retries, "retry_timeout": timeout * 2})
        self._concurrency = max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"S3Bucket({self.bucket}/{self.prefix}{where})"

    # --- errors ----------------------------------------------------------------------
    def _error(self, op: str, key: str, exc: Exception) -> OSError:
        """A failure of the service as an OSError that names the bucket and the key
        (obstore's own text has a debug dump after its first line)."""
        text = str(exc).strip()
        if isinstance(exc, FileNotFoundError) and "NoSuchBucket" not in text:
            return NotFound(key)  # a missing bucket is a failure, not a missing object
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            return exc
        from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

        text = f"S3 {op} of {key!r} in {self!r} failed: {text.split(chr(10), 1)[0]}"
        if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
            return PermissionError(text)
        return OSError(text)

    # --- the contract ----------------------------------------------------------------
    def put(self, key: str, data: Data) -> None:
        import obstore

        check_key(key)
        try:
            obstore.put(self._store, key, data, use_multipart=False)
        except Exception as exc:
            raise self._error("put", key, exc) from exc

    def put_many(self, items: Sequence[tuple[str, Data]]) -> list[OSError | None]:
        for key, _ in items:
            check_key(key)
        if len(items) <= 1:
            return super().put_many(items)

        def one(item: tuple[str, Data]) -> OSError | None:
            try:
                self.put(*item)
            except OSError as exc:
                return exc
            return None

        return list(self._executor().map(one, items))

    def get(self, key: str) -> bytes:
        import obstore

        check_key(key)
        try:
            return obstore.get(self._store, key).bytes().to_bytes()
        except Exception as exc:
            raise self._error("get", key, exc) from exc

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        import obstore

        check_key(key)
        if offset < 0 or length < 0:
            raise ValueError(f"get_range of {key!r}: offset {offset} and length {length} "
                             "must not be negative")
        if length == 0:
            self._size(key)  # NotFound when there is no object
            return b""
        try:
            return obstore.get_range(self._store, key, start=offset, length=length).to_bytes()
        except FileNotFoundError as exc:
            raise self._error("get_range", key, exc) from exc
        except Exception as exc:
            # 416 for a range past the end (S3 has no empty slice): the size decides.
            if offset >= self._size(key):
                return b""
            raise self._error("get_range", key, exc) from exc

    def _size(self, key: str) -> int:
        import obstore

        try:
            return obstore.head(self._store, key)["size"]
        except Exception as exc:
            raise self._error("head", key, exc) from exc

    def delete(self, key: str) -> None:
        import obstore

        check_key(key)
        try:
            obstore.delete(self._store, key)
        except Exception as exc:
            err = self._error("delete", key, exc)
            if isinstance(err, NotFound):
                return
            raise err from exc
            raise self._error("delete", key, exc) from exc

    def delete_many(self, keys: Iterable[str]) -> None:
        import obstore

        todo = sorted({check_key(k) for k in keys})
        for i in range(0, len(todo), 1000):  # S3's bulk delete takes 1,000 keys
            batch = todo[i:i + 1000]
            try:
                obstore.delete(self._store, batch)
            except Exception as exc:
                err = self._error("delete", f"{batch[0]} (and {len(batch) - 1} more)", exc)
                if not isinstance(err, NotFound):
                    raise err from exc

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        import obstore

        check_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        out: list[ObjectInfo] = []
        try:
            for batch in obstore.list(self._store, head or None, chunk_size=1000):
                for meta in batch:
                    key = meta["path"]
                    if key.startswith(prefix):
                        out.append(ObjectInfo(key, meta["size"],
                                              meta["last_modified"].timestamp()))
        except Exception as exc:
            raise self._error("list", prefix, exc) from exc
        out.sort(key=lambda o: o.key)
        return out

    def check(self) -> None:
        """A listing of one key's worth: fails for a missing bucket, refused credentials or
        an endpoint that does not answer."""
        import obstore

        try:
            stream = obstore.list(self._store, "sluiceway-check", chunk_size=1)
            next(iter(stream), None)
        except Exception as exc:
            raise self._error("list", "sluiceway-check/", exc) from exc

    def clean_interrupted(self) -> int:
        return 0  # one PUT per object: S3 never shows, nor keeps, a part of one

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._concurrency,
                                                thread_name_prefix="s3-put")
            return self._pool
