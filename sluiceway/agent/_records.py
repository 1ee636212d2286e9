"""`Records`: the column-wise batch that flows through an input's pipeline stages;
`Piece`: what an input hands the batcher, lines as the UTF-8 bytes they go out as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Fields = dict[str, Any]


@dataclass(slots=True)
class Piece:
    """Lines of one stream on their way to a push: `labels`, stamps (Unix ns) and the
    lines as UTF-8 bytes. A file read without stages stays bytes from the read to the
    wire: never decoded to `str`, never merged into other lists. `metadata`: each line's
    structured metadata, when a stage gave some."""

    labels: dict[str, str]
    ts: npt.NDArray[np.int64]
    lines: list[bytes]
    metadata: list[dict[str, str] | None] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def cut(self, start: int, end: int) -> Piece:
        md = None if self.metadata is None else self.metadata[start:end]
        return Piece(self.labels, self.ts[start:end], self.lines[start:end], md)


@dataclass(slots=True)
class Records:
    """Parallel columns, one entry per record.

    Optional columns stay None until a stage needs them, so the common path (tail and
    ship) never builds a per-line object. `starts` holds the file offset of each
    record's first byte; only stateful stages (multiline, cri, docker) need it, to tell
    the positions tracker which bytes they still hold.
    """

    ts: list[int]
    lines: list[str]
    starts: list[int] | None = None
    fields: list[Fields] | None = None
    labels: list[dict[str, str] | None] | None = None
    seqs: list[int] | None = None  # the ledger's numbers, when the input numbers lines
    metadata: list[dict[str, str] | None] | None = None
    tags: list[int] | None = None  # a `match` stage's own record numbers
    # The stream labels every record starts with (the pipeline's), for stages that read
    # or remove labels; a record's own `labels` win, an empty value removes one.
    base: dict[str, str] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def ensure_fields(self) -> list[Fields]:
        if self.fields is None:
            self.fields = [{} for _ in self.lines]
        return self.fields

    def ensure_labels(self) -> list[dict[str, str] | None]:
        if self.labels is None:
            self.labels = [None] * len(self.lines)
        return self.labels

    def ensure_metadata(self) -> list[dict[str, str] | None]:
        if self.metadata is None:
            self.metadata = [None] * len(self.lines)
        return self.metadata

    def labels_of(self, i: int) -> dict[str, str]:
        """Record `i`'s stream labels as they stand (base, then its own)."""
        own = self.labels[i] if self.labels is not None else None
        base = self.base or {}
        if not own:
            return dict(base)
        return {k: v for k, v in {**base, **own}.items() if v != ""}

    def value(self, i: int, name: str) -> Any:
        """Field `name` of record `i`; a name not extracted falls back to the record's
        label of that name (Promtail's extracted map starts with the labels)."""
        if self.fields is not None:
            v = self.fields[i].get(name)
            if v is not None:
                return v
        own = self.labels[i] if self.labels is not None else None
        if own and name in own:
            return own[name] or None
        return (self.base or {}).get(name)

    def take(self, keep: list[int]) -> Records:
        """The records at indexes `keep`, order kept."""
        if len(keep) == len(self.lines):
            return self
        ts, lines = self.ts, self.lines
        out = Records([ts[i] for i in keep], [lines[i] for i in keep])
        if self.starts is not None:
            out.starts = [self.starts[i] for i in keep]
        if self.fields is not None:
            out.fields = [self.fields[i] for i in keep]
        if self.labels is not None:
            out.labels = [self.labels[i] for i in keep]
        if self.seqs is not None:
            out.seqs = [self.seqs[i] for i in keep]
        if self.metadata is not None:
            out.metadata = [self.metadata[i] for i in keep]
        if self.tags is not None:
            out.tags = [self.tags[i] for i in keep]
        out.base = self.base
        return out

    def extend(self, other: Records) -> None:
        n0 = len(self.lines)
        self.ts.extend(other.ts)
        self.lines.extend(other.lines)
        for col in ("starts", "fields", "labels", "metadata", "seqs"):
            mine, theirs = getattr(self, col), getattr(other, col)
            if mine is None and theirs is None:
                continue
            if mine is None:
                mine = _blank(col, n0)
                setattr(self, col, mine)
            mine.extend(theirs if theirs is not None else _blank(col, len(other.lines)))

    @staticmethod
    def pick(order: list[tuple[Records, int]], base: dict[str, str] | None) -> Records:
        """A batch of the given records of other batches, in this order."""
        out = Records([r.ts[i] for r, i in order], [r.lines[i] for r, i in order], base=base)
        for col in ("starts", "fields", "labels", "metadata", "seqs"):
            if any(getattr(r, col) is not None for r, _ in order):
                setattr(out, col, [getattr(r, col)[i] if getattr(r, col) is not None
                                   else _blank(col, 1)[0] for r, i in order])
        return out

    @staticmethod
    def empty() -> Records:
        return Records([], [])


def _blank(col: str, n: int) -> list[Any]:
    if col == "fields":
        return [{} for _ in range(n)]
    return [None] * n if col in ("labels", "metadata") else [0] * n
