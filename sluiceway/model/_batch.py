"""The unit of ingest: one stream's entries, column-wise so hot paths avoid per-line objects."""

from __future__ import annotations

from dataclasses import dataclass, field

Metadata = dict[str, str]


@dataclass(slots=True)
class StreamBatch:
    """Entries of one stream in arrival order.

    `ts` are Unix nanoseconds, `lines` the log lines; `metadata[i]` is the structured
    metadata of entry i, or None when no entry of the batch carries any.
    """

    labels: dict[str, str]
    ts: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    metadata: list[Metadata | None] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def append(self, ts: int, line: str, metadata: Metadata | None = None) -> None:
        if metadata and self.metadata is None:
            self.metadata = [None] * len(self.ts)
        self.ts.append(ts)
        self.lines.append(line)
        if self.metadata is not None:
            self.metadata.append(metadata or None)
