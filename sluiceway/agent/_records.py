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
    wire: never decoded to `str`, never merged into other lists."""

    labels: dict[str, str]
    ts: npt.NDArray[np.int64]
    lines: list[bytes]

    def __len__(self) -> int:
        return len(self.lines)

    def cut(self, start: int, end: int) -> Piece:
        return Piece(self.labels, self.ts[start:end], self.lines[start:end])


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
        return out

    def extend(self, other: Records) -> None:
        n0 = len(self.lines)
        self.ts.extend(other.ts)
        self.lines.extend(other.lines)
        for col in ("starts", "fields", "labels", "seqs"):
            mine, theirs = getattr(self, col), getattr(other, col)
            if mine is None and theirs is None:
                continue
            if mine is None:
                mine = _blank(col, n0)
                setattr(self, col, mine)
            mine.extend(theirs if theirs is not None else _blank(col, len(other.lines)))

    @staticmethod
    def empty() -> Records:
        return Records([], [])


def _blank(col: str, n: int) -> list[Any]:
    if col == "fields":
        return [{} for _ in range(n)]
    return [None] * n if col == "labels" else [0] * n
