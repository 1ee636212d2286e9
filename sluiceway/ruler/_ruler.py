"""The ruler: keeps the rule groups of every tenant in step with the store and evaluates
each on its own schedule.

Every `poll_interval` (and at once after a write through the rules API) the store is
read; a new group gets its own asyncio task, a changed one is replaced (unchanged rules
keep their alerts), a removed one stops. A group is evaluated at `interval` multiples
shifted by a per-group offset (as Prometheus spreads groups), the queries running on a
worker thread; what an evaluation produced goes to the remote writer and the notifier.

With a `shard` (cluster mode), this ruler runs only the groups the shard says are its
own: every `shard.tick_s` it hands the shard every group the store holds, and keeps the
ones the shard claimed (a lease per group); a group is evaluated only while the shard
`holds` it, so a lease lost stops its evaluations at once. A group that moved to another
member is dropped here without removing its for-state (the next holder reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from sluiceway.ruler._config import RulerConfig
from sluiceway.ruler._forstate import StateHome
from sluiceway.ruler._group import GroupRuntime
from sluiceway.ruler._notify import Notifier, am_alert, generator_url
from sluiceway.ruler._remote import RemoteWriter
from sluiceway.ruler._rules import QueryFunc
from sluiceway.ruler._store import LoadedRules, RuleStore

log = logging.getLogger("sluiceway.ruler")
GroupKey = tuple[str, str, str]


class GroupShard(Protocol):
    """Which groups this ruler evaluates, when several rulers share one rule store."""

    tick_s: float  # how often `claim` is asked

    def claim(self, keys: list[GroupKey]) -> set[GroupKey]:
        """Of every group the store holds, those this ruler evaluates now (blocking)."""
        ...

    def holds(self, key: GroupKey) -> bool:
        """Whether this ruler still holds `key` (no I/O: asked before each evaluation)."""
        ...


class Ruler:
    def __init__(self, store: RuleStore, query: QueryFunc, cfg: RulerConfig,
                 notifier: Notifier | None = None, writer: RemoteWriter | None = None,
                 state_dir: StateHome | None = None) -> None:
        """`state_dir`: where the groups' for-state is kept (None: not kept)."""
        self.store, self.query, self.cfg, self.state_dir = store, query, cfg, state_dir
        self.notifier, self.writer = notifier, writer
        self.shard: GroupShard | None = None  # set before `start` (cluster mode)
        self._loaded: LoadedRules | None = None
        self.groups: dict[GroupKey, GroupRuntime] = {}
        self.load_errors: dict[str, str] = {}
        self._tasks: dict[GroupKey, asyncio.Task[None]] = {}
        self._helpers: list[asyncio.Task[None]] = []
        self._sync_now = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._running: set[asyncio.Future[Any]] = set()
        self.synced = 0  # store reads so far (tests wait on it)
        self._reread = False  # a write through the API: read the store now

    @classmethod
    def from_config(cls, cfg: RulerConfig, store: RuleStore, query: QueryFunc,
                    state_dir: StateHome | None, user_agent: str) -> Ruler:
        """The ruler of a `ruler:` section: its notifier when it names Alertmanagers, its
        remote writer when `remote_write` is enabled with clients."""
        urls = cfg.alertmanager_urls()
        notifier = Notifier(urls, cfg.notification_timeout, cfg.notification_queue_capacity,
                            user_agent) if urls else None
        rw = cfg.remote_write
        writer = (RemoteWriter(rw.all_clients(), rw.add_org_id_header, cfg.external_labels,
                               user_agent) if rw.enabled and rw.all_clients() else None)
        return cls(store, query, cfg, notifier, writer, state_dir)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        helpers: list[Coroutine[Any, Any, None]] = []
        if self.notifier is not None:
            helpers.append(self.notifier.run())
        if self.writer is not None:
            helpers.append(self.writer.run())
        self._helpers = [loop.create_task(h) for h in helpers]
        self._main = loop.create_task(self._run())

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self._helpers]
        if self._main is not None:
            tasks.append(self._main)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._running:
            await asyncio.wait(set(self._running), timeout=30)
        if self.writer is not None:
            self.writer.close()

    def request_sync(self) -> None:
        """Read the store again now (after the API changed it)."""
        self._sync_now.set()

    # --- syncing ---------------------------------------------------------------------

    async def _run(self) -> None:
        read_at = -1.0
        while True:
            self._sync_now.clear()
            now = time.monotonic()
            # With a shard the loop also wakes every tick_s to claim groups; the store
            # itself is read every poll_interval (a timer may fire a little early).
            if self.shard is None or self._loaded is None or self._reread \
                    or now - read_at >= 0.95 * self.cfg.poll_interval:
                self._reread = False
                try:
                    self._loaded = await asyncio.to_thread(self.store.load_all)
                    read_at = now
                except OSError as exc:  # the cluster's NATS not answering now, say
                    log.warning("cannot read the rule store now: %s", exc)
                except Exception:
                    log.exception("cannot read the rule store")
            if self._loaded is not None:
                try:
                    await self._apply(self._loaded)
                except Exception:
                    log.exception("cannot apply the rule store")
            self.synced += 1
            wait = self.cfg.poll_interval if self.shard is None \
                else min(self.cfg.poll_interval, self.shard.tick_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), wait)
                self._reread = True

    async def _apply(self, loaded: LoadedRules) -> None:
        for path, err in loaded.errors.items():
            if self.load_errors.get(path) != err:
                log.warning("rule file not loaded: %s", err)
        self.load_errors = dict(loaded.errors)
        stored: dict[GroupKey, Any] = {}
        for tenant, namespaces in loaded.groups.items():
            for ns, groups in namespaces.items():
                for g in groups:
                    stored[(tenant, ns, g.name)] = g
        wanted = stored
        if self.shard is not None:
            mine = await asyncio.to_thread(self.shard.claim, list(stored))
            wanted = {k: g for k, g in stored.items() if k in mine}
        for key in list(self.groups):
            if key not in wanted:
                gone = self.groups[key]
                self._drop(key)
                if key in stored:  # moved to another ruler: its state stays for it
                    continue
                if gone.forstate is not None:
                    try:  # I/O (a file, or the cluster's KV): off the event loop
                        await asyncio.to_thread(gone.forstate.remove)
                    except OSError as exc:
                        log.warning("cannot remove %s: %s", gone.forstate.path, exc)
        for key, group in wanted.items():
            old = self.groups.get(key)
            if old is not None and old.group == group:
                continue
            try:
                # reads the group's for-state (a file, or the cluster's KV): off the loop
                rt = await asyncio.to_thread(GroupRuntime, key[0], key[1], group, self.cfg,
                                             self.state_dir)
            except Exception as exc:  # a rule file edited by hand with a bad expression
                self.load_errors[f"{key[0]}/{key[1]}/{key[2]}"] = str(exc)
                continue
            if old is not None:
                with old.lock:
                    rt.take_state(old)
                self._drop(key)
            self.groups[key] = rt
            self._tasks[key] = asyncio.get_running_loop().create_task(self._loop(rt))

    def _drop(self, key: GroupKey) -> None:
        self.groups.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    # --- evaluating ------------------------------------------------------------------

    def _offset(self, rt: GroupRuntime) -> int:
        digest = hashlib.sha256("\0".join(rt.key).encode()).digest()
        return int.from_bytes(digest[:8], "big") % rt.interval_ns

    async def _loop(self, rt: GroupRuntime) -> None:
        interval, offset = rt.interval_ns, self._offset(rt)
        now = time.time_ns()
        ts = (now - offset) // interval * interval + offset + interval
        while True:
            await asyncio.sleep(max(0.0, (ts - time.time_ns()) / 1e9))
            if self.shard is not None and not self.shard.holds(rt.key):
                ts += interval  # the lease was lost: the next sync drops the group
                continue
            fut = asyncio.get_running_loop().run_in_executor(None, rt.evaluate, ts, self.query)
            self._running.add(fut)
            fut.add_done_callback(self._running.discard)
            try:
                # shielded: a stop waits for an evaluation under way (it reads the store)
                out = await asyncio.shield(fut)
            except Exception:
                log.exception("group %s/%s of tenant %s failed", rt.namespace,
                              rt.group.name, rt.tenant)
            else:
                self._deliver(rt, ts, out.samples, out.alerts)
            now = time.time_ns()
            ts += interval
            if ts <= now:  # missed evaluations: go on from the next due one
                ts = (now - offset) // interval * interval + offset + interval

    def _deliver(self, rt: GroupRuntime, ts: int, samples: Any, alerts: Any) -> None:
        if self.writer is not None:
            self.writer.enqueue(rt.tenant, samples, ts // 1_000_000)
        if self.notifier is not None:
            for rule, due in alerts:
                url = generator_url(self.cfg.external_url, rule.rule.expr)
                self.notifier.send(rt.tenant, [am_alert(a, self.cfg.external_labels, url)
                                               for a in due])

    # --- views -----------------------------------------------------------------------

    def tenant_groups(self, tenant: str) -> list[GroupRuntime]:
        return sorted((g for k, g in self.groups.items() if k[0] == tenant),
                      key=lambda g: (g.namespace, g.group.name))
