"""`ClusterSource`: the `LogSource` of a cluster process — the local source (flushed
chunks through the shared object store's index objects, and this process's own heads)
merged with what the other ingesters' heads hold (`HeadsClient.fetch`).

One answer per (tenants, matchers, range) is fetched from the ingesters when `series`
is asked — before the local store is read, since an answer may make the local index
sync first (`HeadsClient`) — and kept for the `blocks` calls of the same query (a source is made per
request); a `blocks` call that no kept answer covers asks for that one series. Blocks
of a series that other ingesters also hold are merged with `model.merge_blocks` (sorted,
exact duplicates removed: a line replayed by a new owner, or both in a chunk and still
in a head, is returned once). No `generation`: results of a cluster source are not
cached (lines of closed ranges can still arrive by replay).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from sluiceway.logql import Deadline, DerivedSource, IndexStats, LinePrefilter, LogSource
from sluiceway.model import EntryBlock, Matcher, ReadHints, SeriesRef, in_read_order, merge_blocks

Found = list[tuple[SeriesRef, EntryBlock]]
Fetch = Callable[[list[str], list[Matcher], int, int], Found]


class _Answer:
    __slots__ = ("end", "matchers", "series", "start", "tenants")

    def __init__(self, tenants: list[str], matchers: list[Matcher], start: int, end: int,
                 found: Found) -> None:
        self.tenants, self.matchers, self.start, self.end = set(tenants), matchers, start, end
        self.series: dict[tuple[str, int], tuple[SeriesRef, list[EntryBlock]]] = {}
        for ref, block in found:
            key = (ref.tenant, ref.fp)
            if key not in self.series:
                self.series[key] = (ref, [])
            self.series[key][1].append(block)

    def covers(self, ref: SeriesRef, start: int, end: int) -> bool:
        return (ref.tenant in self.tenants and self.start <= start and end <= self.end
                and all(m.matches(ref.labels.get(m.name, "")) for m in self.matchers))


class ClusterSource(DerivedSource):
    def __init__(self, local: LogSource, fetch: Fetch) -> None:
        self.local = local
        self.fetch = fetch
        self._answers: list[_Answer] = []
        self._lock = threading.Lock()

    @property
    def warnings(self) -> list[str]:
        out: list[str] = getattr(self.local, "warnings", [])
        return out

    def _remote(self, tenants: list[str], matchers: list[Matcher], start: int,
                end: int) -> _Answer:
        answer = _Answer(tenants, matchers, start, end, self.fetch(tenants, matchers, start, end))
        with self._lock:
            self._answers.append(answer)
        return answer

    def _remote_blocks(self, ref: SeriesRef, start: int, end: int) -> list[EntryBlock]:
        with self._lock:
            answer = next((a for a in self._answers if a.covers(ref, start, end)), None)
        if answer is None:
            exact = [Matcher(k, "=", v) for k, v in sorted(ref.labels.items())]
            answer = self._remote([ref.tenant], exact, start, end)
        got = answer.series.get((ref.tenant, ref.fp))
        if got is None:
            return []
        return [c for b in got[1] if len(c := b.clip(start, end))]

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        # The other ingesters first: an answer may make the local index sync first.
        answer = self._remote(tenants, matchers, start, end)
        out = self.local.series(tenants, matchers, start, end)
        seen = {(r.tenant, r.fp) for r in out}
        out.extend(ref for key, (ref, _) in answer.series.items() if key not in seen)
        return out

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        remote = self._remote_blocks(ref, start, end)
        if not remote:
            return self.local.blocks(ref, start, end, direction, prefilter=prefilter,
                                     deadline=deadline, hints=hints)
        return self._merged(ref, start, end, direction, prefilter, deadline, remote)

    def _merged(self, ref: SeriesRef, start: int, end: int, direction: str,
                prefilter: LinePrefilter | None, deadline: Deadline | None,
                remote: list[EntryBlock]) -> Iterator[EntryBlock]:
        # Other data overlaps: nothing may be summarized unread (hints left out).
        local = list(self.local.blocks(ref, start, end, direction, prefilter=prefilter,
                                       deadline=deadline))
        spans = in_read_order([(int(b.ts[0]), int(b.ts[-1]), b) for b in local + remote],
                              direction)
        for block in merge_blocks([(lo, hi) for lo, hi, _ in spans],
                                  (b for _, _, b in spans), direction, start, end):
            if deadline is not None:
                deadline.check()
            yield block

    def stats(self, tenants: list[str], matchers: list[Matcher], start: int,
              end: int) -> IndexStats:
        """The local source's stats (chunk metadata, its own heads as one chunk per
        stream) plus each other ingester's heads as one chunk per stream."""
        answer = self._remote(tenants, matchers, start, end)
        out = self.local.stats(tenants, matchers, start, end)
        local = {(r.tenant, r.fp) for r in self.local.series(tenants, matchers, start, end)}
        for key, (_, blocks) in answer.series.items():
            if key not in local:
                out.streams += 1
                local.add(key)
            out.chunks += 1
            out.entries += sum(len(b) for b in blocks)
            out.bytes += sum(b.nbytes for b in blocks)
        return out
