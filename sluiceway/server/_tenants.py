"""Tenants: reading `X-Scope-OrgID` as Loki (dskit's `tenant` package) does, and Loki's
multi-tenant queries (`querier.multi_tenant_queries_enabled`).

- Writes, tail and heartbeats take one tenant. `a|a` is that one tenant; `a|b` is 400.
- Reads take one tenant too, unless multi-tenant queries are enabled: then `a|b` names
  several, sorted and de-duplicated, at most `MAX_QUERY_TENANTS`. Each series of such a
  query carries the label `__tenant_id__`, and a selector matcher on `__tenant_id__` picks
  the tenants instead of matching a stored label (a stored `__tenant_id__` label is
  renamed `original___tenant_id__`), as Loki's `MultiTenantQuerier` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from sluiceway.logql import (
    Deadline,
    IndexStats,
    LinePrefilter,
    LogSource,
    SeriesVolume,
    check_selector,
)
from sluiceway.model import EntryBlock, Matcher, ReadHints, SeriesRef
from sluiceway.server._params import ParamError

TENANT_LABEL = "__tenant_id__"
RETAINED_PREFIX = "original_"
MAX_TENANT_ID_LENGTH = 150  # dskit's MaxTenantIDLength
MAX_QUERY_TENANTS = 100
TOO_MANY_ORG_IDS = "multiple org IDs present"  # dskit's user.ErrTooManyOrgIDs
_VALID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!-_.*'()")


def validate_tenant_id(tenant: str) -> None:
    """dskit's `ValidTenantID` rules and texts; an empty id is refused as well."""
    for c in tenant:
        if c not in _VALID:
            raise ParamError(f"tenant ID '{tenant}' contains unsupported character '{c}'")
    if len(tenant) > MAX_TENANT_ID_LENGTH:
        raise ParamError(f"tenant ID is too long: max {MAX_TENANT_ID_LENGTH} characters")
    if tenant in (".", ".."):
        raise ParamError("tenant ID is '.' or '..'")
    if not tenant:
        raise ParamError("tenant ID is empty (X-Scope-OrgID: a|b names two tenants)")


def parse_tenants(header: str | None, default: str, required: bool,
                  many: bool) -> list[str]:
    """The tenant ids of an `X-Scope-OrgID` value. Raises PermissionError (401) when it is
    absent and required, ParamError (400) when it is invalid or, unless `many`, names
    more than one tenant."""
    if not header:
        if required:
            raise PermissionError("no org id")
        return [default]
    ids = header.split("|")
    if not many:
        # dskit's TenantID: the first id is validated, the rest must repeat it.
        validate_tenant_id(ids[0])
        if any(t != ids[0] for t in ids[1:]):
            raise ParamError(TOO_MANY_ORG_IDS)
        return ids[:1]
    for t in ids:
        validate_tenant_id(t)
    unique = sorted(set(ids))  # dskit's NormalizeTenantIDs
    if len(unique) > MAX_QUERY_TENANTS:
        raise ParamError(f"too many tenants in X-Scope-OrgID: {len(unique)}, a query may "
                         f"name at most {MAX_QUERY_TENANTS}")
    return unique


def split_tenant_matchers(tenants: list[str], matchers: list[Matcher],
                          ) -> tuple[list[str], list[Matcher]]:
    """The tenants that the `__tenant_id__` matchers keep, and the other matchers (one on
    `original___tenant_id__` turned back into one on the stored label). Several tenants
    only; the matchers left must still select something (Loki's rule)."""
    kept = list(tenants)
    rest: list[Matcher] = []
    for m in matchers:
        if m.name == TENANT_LABEL:
            kept = [t for t in kept if m.matches(t)]
        elif m.name == RETAINED_PREFIX + TENANT_LABEL:
            rest.append(Matcher(TENANT_LABEL, m.op, m.value))
        else:
            rest.append(m)
    if len(rest) != len(matchers):
        check_selector(rest)
    return kept, rest


def read_scope(tenants: list[str], matchers: list[Matcher]) -> tuple[list[str], list[Matcher]]:
    """For reads that answer totals rather than series (index stats, volume): tenant
    matchers pick the tenants, as in a query; a single tenant's matchers stay as they are."""
    return split_tenant_matchers(tenants, matchers) if len(tenants) > 1 else (tenants, matchers)


def with_tenant_label(labels: Mapping[str, str], tenant: str) -> dict[str, str]:
    out = dict(labels)
    if TENANT_LABEL in out:
        out[RETAINED_PREFIX + TENANT_LABEL] = out.pop(TENANT_LABEL)
    out[TENANT_LABEL] = tenant
    return out


class MultiTenantSource:
    """A `LogSource` over several tenants: tenant matchers pick tenants, and every series
    and block is labelled with its tenant, so results of different tenants never merge
    unless the query aggregates them away. Label names and values answer as over those
    labelled series: `__tenant_id__` is a name of every tenant with a series, its values
    are those tenants."""

    def __init__(self, inner: LogSource) -> None:
        self.inner = inner

    def series(self, tenants: list[str], matchers: list[Matcher], start: int,
               end: int) -> list[SeriesRef]:
        kept, rest = split_tenant_matchers(tenants, matchers)
        return [SeriesRef(r.tenant, r.fp, with_tenant_label(r.labels, r.tenant))
                for r in self.inner.series(kept, rest, start, end)]

    def blocks(self, ref: SeriesRef, start: int, end: int, direction: str, *,
               prefilter: LinePrefilter | None = None,
               deadline: Deadline | None = None,
               hints: ReadHints | None = None) -> Iterator[EntryBlock]:
        labels = dict(ref.labels)
        for b in self.inner.blocks(ref, start, end, direction, prefilter=prefilter,
                                   deadline=deadline, hints=hints):
            yield replace(b, labels=labels)

    def label_names(self, tenants: list[str], matchers: list[Matcher], start: int,
                    end: int) -> list[str]:
        kept, rest = split_tenant_matchers(tenants, matchers)
        names: set[str] = set()
        for t in kept:  # per tenant: whether it has a series at all
            got = self.inner.label_names([t], rest, start, end)
            if got:
                names.update(RETAINED_PREFIX + n if n == TENANT_LABEL else n for n in got)
                names.add(TENANT_LABEL)
        return sorted(names)

    def label_values(self, tenants: list[str], name: str, matchers: list[Matcher],
                     start: int, end: int) -> list[str]:
        kept, rest = split_tenant_matchers(tenants, matchers)
        if name == TENANT_LABEL:
            return [t for t in kept if self.inner.label_names([t], rest, start, end)]
        stored = TENANT_LABEL if name == RETAINED_PREFIX + TENANT_LABEL else name
        return self.inner.label_values(kept, stored, rest, start, end)

    def stats(self, tenants: list[str], matchers: list[Matcher], start: int,
              end: int) -> IndexStats:
        kept, rest = split_tenant_matchers(tenants, matchers)
        return self.inner.stats(kept, rest, start, end)

    def volume(self, tenants: list[str], matchers: list[Matcher], start: int, end: int,
               edges: npt.NDArray[np.int64], *,
               deadline: Deadline | None = None) -> list[SeriesVolume]:
        kept, rest = split_tenant_matchers(tenants, matchers)
        return [(SeriesRef(r.tenant, r.fp, with_tenant_label(r.labels, r.tenant)), v)
                for r, v in self.inner.volume(kept, rest, start, end, edges,
                                              deadline=deadline)]


def read_source(inner: LogSource, tenants: list[str]) -> LogSource:
    """What a read over `tenants` queries: `inner` itself for one tenant (no label added,
    as in Loki), a `MultiTenantSource` over it for several."""
    return MultiTenantSource(inner) if len(tenants) > 1 else inner
