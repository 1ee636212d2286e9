"""An input's pipeline: stages built once from config, run over `Records` batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import re2

from sluiceway.agent import _parsers as p
from sluiceway.agent._config import (
    CriStage,
    DockerStage,
    DropStage,
    JsonStage,
    LabelsStage,
    LogfmtStage,
    MultilineStage,
    OutputStage,
    RegexStage,
    StageConfig,
    StaticLabelsStage,
    TimestampStage,
)
from sluiceway.agent._joiners import Cri, Docker, Multiline
from sluiceway.agent._records import Piece, Records
from sluiceway.wire import utf8_encode

Stateless = Callable[[Records], Records]


class Joiner(Protocol):
    def __call__(self, recs: Records, final: bool = False) -> Records: ...
    def held_from(self) -> int | None: ...


class PipelineSpec:
    """Compiled stage configs; `new()` gives each file its own pipeline (joiners keep state
    per file, so a stack trace never mixes lines of two files)."""

    def __init__(self, stages: list[StageConfig], base_labels: dict[str, str]) -> None:
        self.filtered = p.Counter()
        self.static: dict[str, str] = {}
        self._factories: list[Callable[[], Stateless | Joiner]] = []
        self.stateful = False
        for cfg in stages:
            if isinstance(cfg, StaticLabelsStage):
                # Constant for the input, so it joins the stream labels once, not per line.
                self.static.update(cfg.labels)
                continue
            self._factories.append(self._factory(cfg))
        self.base_labels = {**base_labels, **self.static}

    def _factory(self, cfg: StageConfig) -> Callable[[], Stateless | Joiner]:
        if isinstance(cfg, MultilineStage):
            self.stateful = True
            rx = re2.compile(cfg.firstline)
            return lambda: Multiline(cfg, rx)
        if isinstance(cfg, CriStage):
            self.stateful = True
            return lambda: Cri(cfg)
        if isinstance(cfg, DockerStage):
            self.stateful = True
            return lambda: Docker(cfg)
        stage = self._stateless(cfg)
        return lambda: stage

    def _stateless(self, cfg: StageConfig) -> Stateless:
        if isinstance(cfg, JsonStage):
            return p.json_stage(cfg)
        if isinstance(cfg, LogfmtStage):
            return p.logfmt_stage(cfg)
        if isinstance(cfg, RegexStage):
            return p.regex_stage(cfg)
        if isinstance(cfg, TimestampStage):
            return p.timestamp_stage(cfg)
        if isinstance(cfg, LabelsStage):
            return p.labels_stage(cfg)
        if isinstance(cfg, DropStage):
            return p.drop_stage(cfg, self.filtered)
        if isinstance(cfg, OutputStage):
            return p.output_stage(cfg)
        raise ValueError(f"unsupported stage {cfg!r}")

    def new(self, extra_labels: dict[str, str] | None = None) -> Pipeline:
        labels = {**self.base_labels, **(extra_labels or {})}
        return Pipeline([f() for f in self._factories], labels, self.stateful)


class Pipeline:
    def __init__(self, stages: list[Stateless | Joiner], labels: dict[str, str],
                 stateful: bool) -> None:
        self.stages = stages
        self.labels = labels
        self.stateful = stateful  # needs `Records.starts`
        self.plain = not stages  # no stages: lines go from the read to the wire as bytes
        self._joiners = [s for s in stages if hasattr(s, "held_from")]

    def run(self, recs: Records, final: bool = False) -> Records:
        for stage in self.stages:
            if hasattr(stage, "held_from"):
                recs = stage(recs, final)  # type: ignore[call-arg]
            elif recs.lines:
                recs = stage(recs)
        return recs

    def held_from(self) -> int | None:
        held = [h for j in self._joiners if (h := j.held_from()) is not None]
        return min(held) if held else None

    def to_pieces(self, recs: Records) -> list[Piece]:
        """Group records into one Piece per label set (one when no stage set labels)."""
        if not recs.lines:
            return []
        if recs.labels is None or not any(recs.labels):
            return [Piece(self.labels, np.asarray(recs.ts, dtype=np.int64),
                          utf8_encode(recs.lines))]
        groups: dict[tuple[tuple[str, str], ...], tuple[list[int], list[str]]] = {}
        for t, line, extra in zip(recs.ts, recs.lines, recs.labels, strict=True):
            key = tuple(sorted(extra.items())) if extra else ()
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [])
            group[0].append(t)
            group[1].append(line)
        return [Piece({**self.labels, **dict(key)}, np.asarray(ts, dtype=np.int64),
                      utf8_encode(lines)) for key, (ts, lines) in groups.items()]
