"""How a query's work is cut and run: time splits, parallel units, cancellation.

`split_range` cuts [lo, hi) at multiples of an interval counted from the Unix epoch (as
Loki's `split_queries_by_interval` does), so the same split of a later query has the same
bounds: the results cache keys on them, and the cluster fans the same splits out to nodes.
`run_units` runs independent units of work on up to `parallelism` threads and hands their
results back in submission order; the first failure stops everything still pending.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

from sluiceway.logql._errors import QueryError
from sluiceway.logql._results_cache import ResultsCache
from sluiceway.model import format_humanize_ibytes

T = TypeVar("T")
HOUR_NS = 3600 * 1_000_000_000


class QueryCancelled(Exception):
    """The query's client went away (or the server stopped it): its work was dropped."""


@dataclass(slots=True)
class ExecOptions:
    """Per-query execution settings; the server fills them from the tenant's limits.

    `cancel` is set when the client disconnects; every unit checks it between blocks.
    The query's other limits (series, deadline, template cap) are `QueryParams` fields,
    honoured by both engines.
    `max_bytes_read` (Loki's `max_query_bytes_read`, 0 = off) fails the query once it
    has read more than that many bytes of log lines. `cache` keeps results of splits that
    ended more than `cache_freshness_ns` ago (see `_results_cache`).
    """

    parallelism: int = 1
    split_ns: int = HOUR_NS
    max_bytes_read: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    columnar: bool = True
    cache: ResultsCache | None = None
    cache_freshness_ns: int = 600 * 1_000_000_000  # Loki's max_cache_freshness_per_query

    def check(self) -> None:
        if self.cancel.is_set():
            raise QueryCancelled("query cancelled")


MAX_SPLITS = 1024  # a range wider than this many intervals is cut at a multiple of it


def split_range(lo: int, hi: int, interval: int) -> list[tuple[int, int]]:
    """[lo, hi) cut at multiples of `interval` (ns since the epoch); one piece if <= 0.

    A range of more than `MAX_SPLITS` intervals (`count_over_time(...[300d])`: 7,200
    hours) is cut at multiples of the smallest multiple of `interval` that makes at most
    that many pieces: the cuts still fall on the interval's grid, and the work per
    piece, not the number of pieces, grows with the range."""
    if interval <= 0 or hi <= lo:
        return [(lo, hi)]
    def pieces(step: int) -> int:
        return (hi - 1) // step - lo // step + 1

    k = -(-pieces(interval) // MAX_SPLITS)
    while pieces(interval * k) > MAX_SPLITS:  # an unaligned range: one more piece
        k += 1
    interval *= k
    out = []
    a = lo
    while a < hi:
        b = min(hi, (a // interval + 1) * interval)
        out.append((a, b))
        a = b
    return out


def too_many_bytes(read: int, limit: int) -> QueryError:
    """Loki's answer (its sizes as Go's `humanize.IBytes` writes them)."""
    return QueryError(f"the query would read too many bytes (query: "
                      f"{format_humanize_ibytes(read)}, limit: {format_humanize_ibytes(limit)}); "
                      "consider adding more specific stream selectors or reduce the time range "
                      "of the query")


class Aborted(Exception):
    """A unit stopped because another one failed."""


Unit = Callable[[threading.Event], T]


def run_units(units: Iterable[Unit[T]], parallelism: int,
              opts: ExecOptions | None = None) -> Iterator[T]:
    """Results of `units`, computed on up to `parallelism` threads, in completion order
    (callers merge them with order-free sums).

    Each unit gets an abort flag to check between blocks (and raises `Aborted` when it is
    set). At most `parallelism` units are in flight, so memory is bounded by the blocks
    they hold. When a unit fails, the pending ones are dropped, the running ones are
    aborted, and the failure of the earliest unit in submission order is raised: with one
    thread that is exactly the sequential engine's error.
    """
    abort = threading.Event()
    it = enumerate(units)
    if parallelism <= 1:
        for _, u in it:
            if opts is not None:
                opts.check()
            yield u(abort)
        return
    pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="query")
    running: dict[Future[T], int] = {}
    errors: list[tuple[int, BaseException]] = []

    def submit() -> bool:
        nxt = next(it, None)
        if nxt is None:
            return False
        running[pool.submit(nxt[1], abort)] = nxt[0]
        return True

    try:
        for _ in range(parallelism):
            if not submit():
                break
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                k = running.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    if not isinstance(exc, Aborted):
                        errors.append((k, exc))
                    abort.set()
                    continue
                if not abort.is_set():
                    yield fut.result()
            if abort.is_set():
                continue  # wait for the running units to stop, submit nothing more
            if opts is not None and opts.cancel.is_set():
                abort.set()
                errors.append((-1, QueryCancelled("query cancelled")))
                continue
            while len(running) < parallelism and submit():
                pass
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
    finally:
        abort.set()
        pool.shutdown(wait=True, cancel_futures=True)
