"""Streams and KV buckets made on first use, with the replicas the NATS cluster can
hold: `replicas` is capped at the cluster's size (nats-server refuses more, e.g. "replicas
> 1 not supported in non-clustered mode"), with one log line saying so."""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from sluiceway.cluster._conn import NatsConn

log = logging.getLogger("sluiceway.cluster")


def _too_many_replicas(exc: Exception) -> bool:
    text = str(exc).lower()
    return "replicas" in text or "insufficient resources" in text or "peer" in text


async def ensure_stream(js: JetStreamContext, name: str, subjects: list[str],
                        replicas: int, description: str) -> int:
    """The stream `name` over `subjects` (file storage, limits retention without limits:
    messages go only when purged). Returns the replicas it has."""
    from nats.js import api
    from nats.js.errors import APIError, NotFoundError

    try:
        info = await js.stream_info(name)
        return info.config.num_replicas or 1
    except NotFoundError:
        pass
    want = replicas
    while True:
        cfg = api.StreamConfig(name=name, subjects=subjects, description=description,
                               storage=api.StorageType.FILE, num_replicas=replicas,
                               retention=api.RetentionPolicy.LIMITS,
                               discard=api.DiscardPolicy.OLD, duplicate_window=120.0)
        try:
            await js.add_stream(cfg)
        except APIError as exc:
            if replicas > 1 and _too_many_replicas(exc):
                replicas -= 1
                continue
            if "already in use" in str(exc):
                return (await js.stream_info(name)).config.num_replicas or 1
            raise
        if replicas < want:
            log.warning("cluster: stream %s has %d replicas, not %d: the NATS cluster has "
                        "fewer servers", name, replicas, want)
        return replicas


async def ensure_kv(js: JetStreamContext, name: str, replicas: int, ttl_s: float | None,
                    history: int = 1) -> KeyValue:
    """The KV bucket `name` (with a bucket TTL when given: every key expires that long
    after its last write)."""
    from nats.js import api
    from nats.js.errors import APIError, BucketNotFoundError

    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        pass
    want = replicas
    while True:
        try:
            kv = await js.create_key_value(api.KeyValueConfig(
                bucket=name, history=history, ttl=ttl_s, replicas=replicas,
                storage=api.StorageType.FILE))
        except APIError as exc:
            if replicas > 1 and _too_many_replicas(exc):
                replicas -= 1
                continue
            if "already in use" in str(exc):
                return await js.key_value(name)
            raise
        if replicas < want:
            log.warning("cluster: KV bucket %s has %d replicas, not %d: the NATS cluster "
                        "has fewer servers", name, replicas, want)
        return kv


async def kv_snapshot(kv: KeyValue, keys: str = ">") -> dict[str, bytes]:
    """Every live key matching `keys` (a subject pattern) and its value, read with one
    watcher (deleted and purged keys left out): one NATS consumer, not a get per key."""
    out: dict[str, bytes] = {}
    watcher = await kv.watch(keys, ignore_deletes=True)
    try:
        async for entry in watcher:
            if entry is None:  # the end of what was there when the watch began
                break
            if entry.value is not None:
                out[entry.key] = entry.value
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return out


def kv_value(conn: NatsConn, kv: KeyValue, key: str, what: str) -> bytes | None:
    """The value of `key` (None: no such key, or an empty value); a NATS failure raises
    `ClusterError` as `conn.run` does."""
    from nats.js.errors import KeyNotFoundError

    from sluiceway.cluster._conn import ClusterError

    try:
        entry = conn.run(kv.get(key), what)
    except ClusterError as exc:
        if isinstance(exc.__cause__, KeyNotFoundError):
            return None
        raise
    return entry.value or None


def kv_token(part: str) -> str:
    """Any name as one token of a KV key (base64url, unpadded; `=` for the empty name)."""
    return base64.urlsafe_b64encode(part.encode()).decode().rstrip("=") or "="


def kv_untoken(token: str) -> str:
    """The name of a `kv_token` (ValueError when it is not one)."""
    if token == "=":
        return ""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
