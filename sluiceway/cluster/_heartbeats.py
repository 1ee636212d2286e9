"""Heartbeats shared through KV: the pipeline page of any node shows every agent and
in-app client that reports to any node.

A node that accepts a heartbeat (validated by `sluiceway.model.parse_heartbeat` and kept
in its own `PipelineRegistry`) also writes it to the KV bucket `<prefix>heartbeats`, one
key per (tenant, id), with the time it was received and the node's id. Every node
watches the bucket and keeps each other node's heartbeats in its own registry as if they
had come to it, at the time they were received; so a card, its staleness, its token
check and its loss history are the same on every node. The bucket's TTL is
`heartbeat_forget_after`: a reporter that stopped everywhere is forgotten everywhere.

The write does not delay the heartbeat's answer (it goes out on the connection's loop; a
failure is logged, and the next heartbeat writes again). A heartbeat that one node
refuses as another process's (409) while another accepted it stays where it was
accepted (an id used by two processes at once; each is told by its own node).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from sluiceway.cluster._admin import ensure_kv
from sluiceway.cluster._conn import NatsConn
from sluiceway.model import HeartbeatRefused, PipelineRegistry

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = logging.getLogger("sluiceway.cluster")


def _part(text: str) -> str:
    """A KV key token for any text (tenant ids and reporter ids are free-form)."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") or "_"


def heartbeat_key(tenant: str, rid: str) -> str:
    return f"hb.{_part(tenant)}.{_part(rid)}"


class SharedHeartbeats:
    """This node's side of the shared heartbeats (module docstring)."""

    def __init__(self, conn: NatsConn, bucket: str, registry: PipelineRegistry, node: str,
                 forget_after_s: float, replicas: int) -> None:
        self.conn, self.registry, self.node = conn, registry, node
        self.applied = 0  # other nodes' heartbeats kept here
        self.published = 0
        self._kv: KeyValue = conn.run(ensure_kv(conn.js, bucket, replicas, forget_after_s),
                                      f"KV bucket {bucket}")
        self._watcher: Any = None
        self._task = conn.submit(self._watch())

    def publish(self, tenant: str, report: dict[str, Any]) -> None:
        """`report` (accepted here) to every other node; returns at once."""
        body = orjson.dumps({"tenant": tenant, "node": self.node, "received": time.time(),
                             "report": report})
        fut = self.conn.submit(self._kv.put(heartbeat_key(tenant, str(report["id"])), body))
        fut.add_done_callback(self._published)

    def _published(self, fut: Any) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.warning("cluster: heartbeat not shared (%s); the next one is", exc)
        else:
            self.published += 1

    async def _watch(self) -> None:
        self._watcher = await self._kv.watchall()
        async for entry in self._watcher:
            if entry is None or not entry.value:
                continue  # the end of the initial values, or a deleted key
            try:
                d = orjson.loads(entry.value)
                if d.get("node") == self.node:
                    continue
                self.registry.record(str(d["tenant"]), d["report"],
                                     received=float(d["received"]))
                self.applied += 1
            except HeartbeatRefused:
                continue  # see the module docstring
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("cluster: shared heartbeat %s cannot be read: %s", entry.key, exc)

    def close(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                self.conn.run(self._watcher.stop(), "heartbeat watch", timeout=5)
        self._task.cancel()
