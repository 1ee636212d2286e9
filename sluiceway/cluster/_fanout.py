"""Query fan-out over NATS: the time splits of a query (`logql.query_splits`) go to a queue
group of queriers, one request each, and come back to the node that took the query, which
merges them in order (`logql.merge_splits`, the same merge as for splits run here).

`SplitQuerier` is a node's place in the queue group: NATS hands each request to one member,
which runs the split on that node's `LogSource` on a bounded pool of threads and replies
with the answer, or with the split's error (`logql.encode_error`). `NatsSplitRunner` is the
`logql.SplitRunner` of one query: it sends up to `in_flight` splits at once and yields their
answers in split order. The query's deadline bounds every request: once it has passed the
query fails with Loki's timeout and the late answers are dropped; the query's cancel flag
drops them too. A split that nobody can answer (no queriers: NATS's no-responders status;
NATS unreachable; an answer larger than NATS's `max_payload`; a querier whose own NATS
requests time out, e.g. in a NATS node's failover; no answer within
`lost_after_s` when the query has no deadline, e.g. its querier died) runs here instead, so
a query never fails only because the queue group is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sluiceway.cluster._conn import ClusterError
from sluiceway.logql import (
    ExecOptions,
    LogSource,
    QueryCancelled,
    QueryParams,
    QueryTimeout,
    SplitAnswer,
    decode_answer,
    decode_request,
    encode_answer,
    encode_error,
    encode_request,
    parse,
    run_split,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

log = logging.getLogger("sluiceway.cluster")
QUEUE_GROUP = "queriers"
# The answering node could not run the split (its answer is larger than NATS's
# max_payload, or its own NATS requests timed out, e.g. during a NATS node's failover):
# the node that took the query runs it itself.
_RUN_THERE = b'{"run_there":true}'
_POLL_S = 0.1  # how often a waiting query looks at its cancel flag


def split_subject(prefix: str) -> str:
    """The subject queriers take splits on, under the cluster's name prefix."""
    return f"{prefix}query.split"


# The source a split reads on this node: its params (tenants, range) and the lookback
# floor (None: none). The node's read path: flushed data and the ingesters' heads.
SourceOf = Callable[[QueryParams, "int | None"], LogSource]


@dataclass(slots=True)
class FanoutCounts:
    """What this node's fan-out did (the `/metrics` counters read them)."""

    sent: int = 0  # splits answered by a querier over NATS
    local: int = 0  # splits of fanned-out queries run here (no querier, too big, lost)
    served: int = 0  # splits this node answered for a query taken elsewhere
    failed: int = 0  # splits this node answered with an error


class SplitQuerier:
    """This node's member of the queriers' queue group (see the module docstring)."""

    def __init__(self, nc: Client, loop: asyncio.AbstractEventLoop, subject: str,
                 source_of: SourceOf, options_of: Callable[[], ExecOptions],
                 workers: int, counts: FanoutCounts | None = None) -> None:
        self.nc, self.loop, self.subject = nc, loop, subject
        self.source_of, self.options_of = source_of, options_of
        self.counts = counts or FanoutCounts()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="split")
        self._sub: object | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subject, queue=QUEUE_GROUP,
                                            cb=self._on_msg)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _on_msg(self, msg: Msg) -> None:
        # Callbacks of one subscription run one after another: answer in a task.
        task = asyncio.ensure_future(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            body = await self.loop.run_in_executor(self._pool, self.answer, msg.data)
        except RuntimeError:  # the pool is shut down: the node is stopping
            return
        if len(body) > self.nc.max_payload:
            body = _RUN_THERE
        with contextlib.suppress(Exception):  # the asker may have gone: nothing to do
            await msg.respond(body)

    def answer(self, data: bytes) -> bytes:
        """One split request answered (bytes in, bytes out); never raises."""
        try:
            req = decode_request(data, self.options_of())
            ans = run_split(self.source_of(req.params, req.floor), parse(req.query),
                            req.params)
            self.counts.served += 1
            return encode_answer(ans)
        except ClusterError as exc:  # not the query's failure: this node's NATS's
            self.counts.failed += 1
            log.info("split handed back to the node that took the query: %s", exc)
            return _RUN_THERE
        except Exception as exc:  # the query's error, raised on the node that took it
            self.counts.failed += 1
            if not isinstance(exc, (QueryCancelled, QueryTimeout, ValueError)):
                log.exception("split failed: %s", data[:200])
            return encode_error(exc)


class _Local(Exception):
    """This split is run here (see the module docstring)."""


class NatsSplitRunner:
    """The `logql.SplitRunner` of one query taken by this node (module docstring)."""

    def __init__(self, nc: Client, loop: asyncio.AbstractEventLoop, subject: str,
                 local: Callable[[QueryParams], LogSource], floor: int | None,
                 in_flight: int, counts: FanoutCounts | None = None,
                 lost_after_s: float = 120.0) -> None:
        self.nc, self.loop, self.subject = nc, loop, subject
        self.local, self.floor = local, floor
        self.in_flight = max(1, in_flight)
        self.counts = counts or FanoutCounts()
        self.lost_after_s = lost_after_s

    def __call__(self, query: str, splits: list[QueryParams]) -> Iterator[SplitAnswer]:
        if len(splits) < 2:  # an unsplit query is answered where it was taken
            for sub in splits:
                yield run_split(self.local(sub), parse(query), sub)
            return
        pending: list[Future[bytes] | None] = []
        try:
            for k, sub in enumerate(splits):
                while len(pending) < min(len(splits), k + self.in_flight):
                    pending.append(self._send(query, splits[len(pending)]))
                yield self._wait(query, sub, pending[k])
                pending[k] = None
        finally:
            for fut in pending:
                if fut is not None:
                    fut.cancel()

    def _send(self, query: str, sub: QueryParams) -> Future[bytes] | None:
        if not self.nc.is_connected:
            return None
        body = encode_request(query, sub, self.floor)
        timeout = self._left(sub)
        return asyncio.run_coroutine_threadsafe(self._request(body, timeout), self.loop)

    async def _request(self, body: bytes, timeout: float) -> bytes:
        msg = await self.nc.request(self.subject, body, timeout=timeout)
        return bytes(msg.data)

    def _left(self, sub: QueryParams) -> float:
        d = sub.deadline
        if d is None:
            return self.lost_after_s
        return max(0.001, d.at - d.clock())

    def _wait(self, query: str, sub: QueryParams, fut: Future[bytes] | None) -> SplitAnswer:
        cancel, deadline = sub.options.cancel, sub.deadline
        try:
            if fut is None:
                raise _Local
            while True:
                if cancel.is_set():
                    raise QueryCancelled("query cancelled")
                try:
                    data = fut.result(timeout=_POLL_S)
                    break
                except FutureTimeout:
                    if deadline is not None and deadline.clock() > deadline.at:
                        raise QueryTimeout() from None
                except Exception as exc:
                    if deadline is not None and deadline.clock() > deadline.at:
                        raise QueryTimeout() from None
                    # No responders, NATS gone, the querier lost: run it here.
                    log.debug("split runs here: %r", exc)
                    raise _Local from None
            if data == _RUN_THERE:
                raise _Local
            ans = decode_answer(data)
            self.counts.sent += 1
            return ans
        except _Local:
            self.counts.local += 1
            return run_split(self.local(sub), parse(query), sub)
