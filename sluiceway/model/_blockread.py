"""What a reader of one series' blocks tells the source it may leave out, and what a
source hands out for a block it did not read.

The query engine fills `ReadHints` per series read; the store looks at it before it
reads a block: a block whose token filter lacks one of `tokens` is skipped (counted in
`skipped`), and with `summary_grid` a block the query only counts may come as a
`BlockSummary` (its line count and bytes from the chunk footer) instead of its lines.
Sources that keep no filters or summaries ignore the hints: the answer is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ReadHints:
    """`tokens`: whole-word tokens (`model.words` form) every line the query selects
    holds, so a block without one of them can be left out.

    `summary_grid` (ns, 0: never): the query counts lines (and bytes) per bucket
    `((k-1)·g, k·g]` and needs nothing else of them, so a block may come as a
    `BlockSummary` when all its entries fall in one bucket and in the range asked for,
    it holds no structured metadata, and no other data of the series overlaps it in time
    (so none of its entries is an exact duplicate the read would have removed).

    The source counts what it did: `skipped` (blocks left out by their filter) and
    `summarized` (blocks handed out as summaries)."""

    tokens: frozenset[bytes] = field(default_factory=frozenset)
    summary_grid: int = 0
    skipped: int = 0
    summarized: int = 0


@dataclass(frozen=True, slots=True)
class BlockSummary:
    """A block handed out without its lines: `n` entries holding `nbytes` bytes of lines,
    all with `mint <= ts <= maxt` (see `ReadHints.summary_grid`)."""

    labels: dict[str, str]
    n: int
    nbytes: int
    mint: int
    maxt: int

    def __len__(self) -> int:
        return self.n
