"""EntryBlock: the column-wise unit the store hands to the query engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sluiceway.model._batch import Metadata

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class EntryBlock:
    """`n` entries of one series, ascending by timestamp.

    Line `i` is `blob[offsets[i]:offsets[i+1]]`; keeping lines in one blob lets filters
    scan all lines with one C call and map hits back through `offsets`.
    """

    labels: dict[str, str]
    ts: I64
    blob: bytes
    offsets: I64
    metadata: list[Metadata | None] | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1] - self.offsets[0]) if len(self) else 0

    def line(self, i: int) -> bytes:
        return self.blob[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def lines(self) -> list[bytes]:
        b, o = self.blob, self.offsets.tolist()
        return [b[o[i] : o[i + 1]] for i in range(len(o) - 1)]

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> EntryBlock:
        """A new block with the selected entries (index array or boolean mask), order kept."""
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        if len(idx) == len(self) and bool((idx == np.arange(len(self))).all()):
            return self
        lines = self.lines()
        picked = [lines[i] for i in idx.tolist()]
        return EntryBlock.from_lines(
            self.labels,
            self.ts[idx],
            picked,
            None if self.metadata is None else [self.metadata[i] for i in idx.tolist()],
        )

    @staticmethod
    def from_lines(
        labels: dict[str, str],
        ts: I64,
        lines: list[bytes],
        metadata: list[Metadata | None] | None = None,
    ) -> EntryBlock:
        offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        if lines:
            np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)),
                      out=offsets[1:])
        return EntryBlock(labels, np.asarray(ts, dtype=np.int64), b"".join(lines), offsets,
                          metadata)
