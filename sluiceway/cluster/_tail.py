"""Live tail across the cluster: every push published to the ingest partitions, through
any node, is offered to this node's tail sessions.

JetStream keeps the partitions' messages, and core NATS delivers each of them to any
plain subscriber of the subject too: while this node has at least one tail session open
it subscribes to every partition subject (`<prefix>ingest.*`), decodes each message (the
push record the distributor published) and hands it to the server's tail hub on the
server's event loop. With no session open it holds no subscription, so the ingest
traffic reaches a node only while someone tails there.

A session sees what is published from the moment it opened; its history (the lines
before) comes from the read path. The hub applies each session's limits as for a local
push (`max_tail_buffer_size`, dropped entries counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluiceway.cluster._config import ClusterConfig
from sluiceway.cluster._conn import NatsConn
from sluiceway.model import EntryBlock, PushRecord

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = logging.getLogger("sluiceway.cluster")


class TailRelay:
    """Subscribed while `acquire`d at least once (module docstring)."""

    def __init__(self, conn: NatsConn, cfg: ClusterConfig,
                 publish: Callable[[str, list[EntryBlock]], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.conn, self.cfg, self.publish, self.loop = conn, cfg, publish, loop
        self.users = 0
        self.relayed = 0  # pushes handed to the hub
        self.unreadable = 0
        self._sub: Any = None
        self._lock = asyncio.Lock()  # on the server's loop

    @property
    def subject(self) -> str:
        return f"{self.cfg.name_prefix}ingest.*"

    async def acquire(self) -> None:
        """A tail session opens: subscribed (and the subscription known to the server)
        before this returns, so nothing published after is missed. With NATS out of
        reach the session opens all the same; the client sends the subscription when it
        reconnects."""
        async with self._lock:
            self.users += 1
            if self._sub is None:
                self._sub = await asyncio.wrap_future(self.conn.submit(self._subscribe()))

    async def _subscribe(self) -> Any:
        sub = await self.conn.nc.subscribe(self.subject, cb=self._on_msg)
        try:
            await self.conn.nc.flush(timeout=max(1, int(self.cfg.timeout)))
        except Exception as exc:  # noqa: BLE001 - NATS away: the client re-sends it later
            log.warning("cluster: live tail cannot reach NATS now (%s); it sees other "
                        "processes' pushes once NATS is back", exc)
        return sub

    async def release(self) -> None:
        async with self._lock:
            self.users = max(0, self.users - 1)
            if self.users or self._sub is None:
                return
            sub, self._sub = self._sub, None
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(self.conn.submit(sub.unsubscribe()))

    async def _on_msg(self, msg: Msg) -> None:
        try:
            record = PushRecord.decode(msg.data)
        except Exception as exc:  # noqa: BLE001 - counted, logged; the tail goes on
            self.unreadable += 1
            log.warning("cluster: a message on %s cannot be read for tail: %s", msg.subject,
                        exc)
            return
        self.relayed += 1
        self.loop.call_soon_threadsafe(self.publish, record.tenant, record.blocks)
