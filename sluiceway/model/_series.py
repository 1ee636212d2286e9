"""`SeriesRef`: one stream of one tenant, as every reader names it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """One series of one tenant; `fp` is its `fingerprint`, `labels` its stream labels
    (not part of equality: a read may relabel a series, as multi-tenant reads do)."""

    tenant: str
    fp: int
    labels: Mapping[str, str] = field(compare=False, hash=False)
