"""What a reader of one series' blocks tells the source it may leave out, and what the
source says of the blocks it did not read.

The query engine makes a `ReadHints` per series read; the store looks at it before it
reads a block: a block whose token filter lacks one of `tokens` is skipped (counted in
`skipped`), and with `summary_grid` a block the query only counts may be left unread,
its line count and bytes (from the chunk footer) put in `summaries` instead. Sources
that keep no filters or summaries ignore the hints: the answer is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BlockSummary:
    """A block left unread: `n` entries holding `nbytes` bytes of lines, all with
    `mint <= ts <= maxt`, and `rows` of (bucket id k, value, lines, bytes): its lines
    per bucket `((k-1)·g, k·g]` of the read's `ReadHints.summary_grid` g, and per value
    of the label `ReadHints.label_key` names (value "" when it names none)."""

    n: int
    nbytes: int
    mint: int
    maxt: int
    rows: tuple[tuple[int, str, int, int], ...] = ()


@dataclass(slots=True)
class ReadHints:
    """`tokens`: whole-word tokens (`model.words` form) every line the query selects
    holds, so a block without one of them can be left out.

    `summary_grid` (ns, 0: never): the query only counts lines (and their bytes) per
    bucket `((k-1)·g, k·g]`, in any order, so a block may go to `summaries` instead of
    being handed out when it lies in the range asked for, holds no structured metadata,
    no other data of the series overlaps it in time (so none of its entries is an exact
    duplicate the read would have removed), and its lines per bucket are known: all in
    one bucket, or counted per minute in its footer. With `label_key`, the counts must
    also be split by the read-time label that rules key names (`detected_level` under
    those `LevelRules`): only blocks whose footer keeps such counts qualify.

    The source fills in what it did: `skipped` (blocks left out by their filter) and
    `summaries`; the reader takes both once it has read the blocks."""

    tokens: frozenset[bytes] = field(default_factory=frozenset)
    summary_grid: int = 0
    label_key: str = ""
    skipped: int = 0
    summaries: list[BlockSummary] = field(default_factory=list)
