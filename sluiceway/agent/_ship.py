"""The agent's shipping: `workers` delivery loops (`sluiceway.ship.DeliveryLoop`) over its
queue, each pushing finished bodies with its own connection.

What each answer does to the lines is the one set of rules of `sluiceway.ship` (shared
with the in-app client): 2xx shipped; a partial 400 loses only the lines Loki names; 401,
403, 404, 405 keep the lines and retry forever with the backend DOWN; 413 splits; 429,
5xx and no answer retry with backoff, honouring Retry-After, lost only when
`retry.max_retries` gives up (in spill mode only with `retry.max_retries_in_spill`, as
a Promtail config's `backoff_config.max_retries` sets it). At the shutdown deadline a
push still unanswered is given up and its lines go back to the queue: spilled, or their
file positions stay put, and the next run sends them again.
"""

from __future__ import annotations

import logging
import threading

from sluiceway.agent._config import AgentConfig
from sluiceway.agent._queue import AgentQueue
from sluiceway.ship import (
    DeliveryLoop,
    DeliveryStats,
    Push,
    PushClient,
    PushDeliverer,
    PushTarget,
    Watch,
)

log = logging.getLogger("sluiceway.agent")


def push_target(cfg: AgentConfig) -> PushTarget:
    t, a = cfg.tls, cfg.auth
    basic = (a.username, a.password) if a.username is not None and a.password is not None \
        else None
    return PushTarget(cfg.url, tenant=cfg.tenant, headers=dict(cfg.headers), basic=basic,
                      bearer=a.bearer_token, ca_file=str(t.ca_file) if t.ca_file else None,
                      cert_file=str(t.cert_file) if t.cert_file else None,
                      key_file=str(t.key_file) if t.key_file else None,
                      verify=not t.insecure_skip_verify, timeout=cfg.timeout)


def shippers(cfg: AgentConfig, queue: AgentQueue, stop: threading.Event,
             who: str = "agent") -> list[DeliveryLoop[Push]]:
    """One loop per worker; they share the counters, the backend's state and the log.
    `cfg` is one lane's (a client's URL, tenant, batch, backoff and retry limit)."""
    target = push_target(cfg)
    stats = DeliveryStats()
    watch = Watch(queue.buffer, who, log)
    return [DeliveryLoop(queue.buffer, PushDeliverer(PushClient(target)), who=who,
                         target=target.push_url, logger=log, retry=cfg.retry, max_units=1,
                         stop=stop, on_done=queue.done, stats=stats, watch=watch,
                         on_lost=queue.ledger.lose_part if queue.ledger is not None else None)
            for _ in range(cfg.workers)]
