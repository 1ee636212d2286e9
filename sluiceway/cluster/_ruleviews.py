"""The ruler's views across the cluster: each rule group is evaluated by one member, so
`/prometheus/api/v1/rules` and `/alerts` on any process gather every ruler's groups
(as Loki's sharded ruler asks every ruler).

Each member answers on the subject `<prefix>ruler-views.<member id>` (NATS request/reply,
so it works whatever address the HTTP API listens on): a request names the view
(`rules` or `alerts`), the tenant and the view's parameters; the answer is the view's
`data` of this member's own groups, as JSON. `gather` asks every other live member with
the ruler role at once and returns the answers that came within the request timeout (a
member that does not answer is left out, logged)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluiceway.cluster._config import ClusterConfig
from sluiceway.cluster._conn import NatsConn
from sluiceway.cluster._members import MemberRegistry

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

log = logging.getLogger("sluiceway.cluster")
Answer = Callable[[dict[str, Any]], dict[str, Any]]  # request -> the view's `data`


def views_subject(cfg: ClusterConfig, member: str) -> str:
    return f"{cfg.name_prefix}ruler-views.{member}"


class RuleViews:
    def __init__(self, conn: NatsConn, cfg: ClusterConfig, members: MemberRegistry,
                 me: str, answer: Answer) -> None:
        self.conn, self.cfg, self.members, self.me = conn, cfg, members, me
        self.answer = answer
        self._sub: Subscription | None = None

    async def start(self) -> None:
        async def on_request(msg: Msg) -> None:
            try:
                req = json.loads(msg.data)
                data = await asyncio.to_thread(self.answer, req)
                body = json.dumps(data).encode()
            except Exception as exc:  # noqa: BLE001 - said to the asker, never lost
                body = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            await msg.respond(body)

        self._sub = await self.conn.nc.subscribe(views_subject(self.cfg, self.me),
                                                 cb=on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _ask(self, member: str, req: bytes) -> dict[str, Any] | None:
        try:
            msg = await self.conn.nc.request(views_subject(self.cfg, member), req,
                                             timeout=self.cfg.timeout)
            got: dict[str, Any] = json.loads(msg.data)
        except Exception as exc:  # noqa: BLE001 - a member that does not answer is left out
            log.warning("cluster: ruler %s did not answer for its rule groups: %s", member,
                        exc)
            return None
        if "error" in got:
            log.warning("cluster: ruler %s could not list its rule groups: %s", member,
                        got["error"])
            return None
        return got

    async def gather(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        """The view's `data` of every other live ruler (blocking calls: the members
        list may be read from NATS; run it on the connection's loop via `conn.submit`)."""
        members = await asyncio.to_thread(self.members.members)
        others = [m.id for m in members if m.has("ruler") and m.id != self.me]
        body = json.dumps(req).encode()
        got = await asyncio.gather(*(self._ask(m, body) for m in others))
        return [g for g in got if g is not None]
