"""An input's pipeline: stages built once from config, run over `Records` batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import re2

from sluiceway.agent import _parsers as p
from sluiceway.agent import _stages as st
from sluiceway.agent._config import (
    CriStage,
    DecolorizeStage,
    DockerStage,
    DropStage,
    JsonStage,
    LabelAllowStage,
    LabelDropStage,
    LabelsStage,
    LimitStage,
    LogfmtStage,
    MatchStage,
    MultilineStage,
    OutputStage,
    PackStage,
    RegexStage,
    ReplaceStage,
    SamplingStage,
    StageConfig,
    StaticLabelsStage,
    StructuredMetadataStage,
    TemplateStage,
    TenantStage,
    TimestampStage,
)
from sluiceway.agent._joiners import Cri, Docker, Multiline
from sluiceway.agent._records import Piece, Records
from sluiceway.wire import utf8_encode

Stateless = Callable[[Records], Records]


class Joiner(Protocol):
    def __call__(self, recs: Records, final: bool = False) -> Records: ...
    def held_from(self) -> int | None: ...


# Called after each stage with (stage name, records before, records after), for --inspect.
Inspect = Callable[[str, Records, Records], None]


class PipelineSpec:
    """Compiled stage configs; `new()` gives each file its own pipeline (joiners keep state
    per file, so a stack trace never mixes lines of two files)."""

    # Set by `--inspect`: every pipeline made reports what each stage changed.
    inspect: Inspect | None = None

    def __init__(self, stages: list[StageConfig], base_labels: dict[str, str]) -> None:
        self.filtered = p.Counter()
        self.static: dict[str, str] = {}
        self._factories: list[Callable[[], Stateless | Joiner]] = []
        self.stateful = False
        self.names: list[str] = []  # each stage's name, for --inspect
        for cfg in stages:
            if isinstance(cfg, StaticLabelsStage) and not self._factories:
                # Constant for the input, so it joins the stream labels once, not per line.
                self.static.update(cfg.labels)
                continue
            self._factories.append(self._factory(cfg))
            self.names.append(stage_name(cfg))
        self.given = dict(base_labels)
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
            return p.json_stage(cfg, self.filtered)
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
        return self._rewriting(cfg)

    def _rewriting(self, cfg: StageConfig) -> Stateless:
        if isinstance(cfg, ReplaceStage):
            return st.replace_stage(cfg)
        if isinstance(cfg, TemplateStage):
            return st.template_stage(cfg)
        if isinstance(cfg, LabelAllowStage):
            return st.labelallow_stage(cfg)
        if isinstance(cfg, LabelDropStage):
            return st.labeldrop_stage(cfg)
        if isinstance(cfg, StaticLabelsStage):
            return st.static_labels_stage(cfg)
        if isinstance(cfg, StructuredMetadataStage):
            return st.structured_metadata_stage(cfg)
        if isinstance(cfg, TenantStage):
            return st.tenant_stage(cfg)
        if isinstance(cfg, LimitStage):
            return st.limit_stage(cfg, self.filtered)
        if isinstance(cfg, SamplingStage):
            return st.sampling_stage(cfg, self.filtered)
        if isinstance(cfg, PackStage):
            return st.pack_stage(cfg)
        if isinstance(cfg, DecolorizeStage):
            return st.decolorize_stage()
        if isinstance(cfg, MatchStage):
            return st.match_stage(cfg, self.filtered,
                                  lambda nested: [self._stateless(c) for c in nested])
        raise ValueError(f"unsupported stage {cfg!r}")

    def new(self, extra_labels: dict[str, str] | None = None) -> Pipeline:
        # A target's labels, then the pipeline's static_labels (which win).
        labels = {**self.given, **(extra_labels or {}), **self.static}
        pipe = Pipeline([f() for f in self._factories], labels, self.stateful, self.names)
        pipe.inspect = PipelineSpec.inspect
        return pipe


def stage_name(cfg: StageConfig) -> str:
    name = type(cfg).__name__.removesuffix("Stage")
    return {"LabelAllow": "labelallow", "LabelDrop": "labeldrop",
            "StaticLabels": "static_labels",
            "StructuredMetadata": "structured_metadata"}.get(name, name.lower())


class Pipeline:
    def __init__(self, stages: list[Stateless | Joiner], labels: dict[str, str],
                 stateful: bool, names: list[str] | None = None) -> None:
        self.stages = stages
        self.labels = labels
        self.stateful = stateful  # needs `Records.starts`
        self.plain = not stages  # no stages: lines go from the read to the wire as bytes
        self.names = names or []
        self.inspect: Inspect | None = None
        self._joiners = [s for s in stages if hasattr(s, "held_from")]

    def run(self, recs: Records, final: bool = False) -> Records:
        recs.base = self.labels
        for n, stage in enumerate(self.stages):
            before = _copy(recs) if self.inspect is not None and recs.lines else None
            if hasattr(stage, "held_from"):
                recs = stage(recs, final)  # type: ignore[call-arg]
                recs.base = self.labels
            elif recs.lines:
                recs = stage(recs)
            if before is not None and self.inspect is not None:
                self.inspect(self.names[n] if n < len(self.names) else "?", before, recs)
        return recs

    def held_from(self) -> int | None:
        held = [h for j in self._joiners if (h := j.held_from()) is not None]
        return min(held) if held else None

    def to_pieces(self, recs: Records) -> list[Piece]:
        """Group records into one Piece per label set (one when no stage set labels);
        a label set to "" by a stage is left out."""
        if not recs.lines:
            return []
        md = recs.metadata if recs.metadata is not None and any(recs.metadata) else None
        if recs.labels is None or not any(recs.labels):
            return [Piece(self.labels, np.asarray(recs.ts, dtype=np.int64),
                          utf8_encode(recs.lines), md)]
        groups: dict[tuple[tuple[str, str], ...],
                     tuple[list[int], list[str], list[dict[str, str] | None]]] = {}
        for i, (t, line, extra) in enumerate(zip(recs.ts, recs.lines, recs.labels,
                                                 strict=True)):
            key = tuple(sorted(extra.items())) if extra else ()
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [], [])
            group[0].append(t)
            group[1].append(line)
            if md is not None:
                group[2].append(md[i])
        base = self.labels
        return [Piece({k: v for k, v in {**base, **dict(key)}.items() if v != ""},
                      np.asarray(ts, dtype=np.int64), utf8_encode(lines),
                      mds if md is not None else None)
                for key, (ts, lines, mds) in groups.items()]


def _copy(recs: Records) -> Records:
    out = Records(list(recs.ts), list(recs.lines), base=recs.base)
    if recs.fields is not None:
        out.fields = [dict(f) for f in recs.fields]
    if recs.labels is not None:
        out.labels = [dict(x) if x else None for x in recs.labels]
    if recs.metadata is not None:
        out.metadata = [dict(x) if x else None for x in recs.metadata]
    return out
