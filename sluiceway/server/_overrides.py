"""Per-tenant limits: the config's `limits`, with Loki's runtime config on top.

The runtime files (`runtime_config.file`, comma-separated) hold Loki's shape:

    overrides:
      team-a:
        max_global_streams_per_user: 10000
        per_stream_rate_limit: 5MB

They are read at start (a bad file stops the server: exit 2) and every
`runtime_config.period` after, without a restart. A file that changed and no longer
reads keeps the overrides loaded before and logs one error per bad version; a good
version after it is logged and applied. Lookups are one dict read per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sluiceway.model import config_error_text, unknown_key, validation_messages
from sluiceway.server._config import ConfigError, LimitsSection, RuntimeConfigSection
from sluiceway.server._loki_config import LOKI_KEYS

log = logging.getLogger("sluiceway.server")
# Loki's runtime file keys besides `overrides` (read, no effect here).
_OTHER_KEYS = frozenset({"configs", "multi_kv_config", "ingester_limits",
                         "ingester_stream_chunks_to_match"})


def _read_overrides(files: list[Path]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The `overrides` of every file (later files win per tenant) and the keys with no
    effect here; raises ConfigError."""
    merged: dict[str, dict[str, Any]] = {}
    ignored: list[str] = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read runtime config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"runtime config {path} is not valid YAML: {exc}") from exc
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"runtime config {path} must be a mapping with 'overrides'")
        for key in doc:
            if key in _OTHER_KEYS:
                ignored.append(str(key))
            elif key != "overrides":
                raise ConfigError(f"runtime config {path}: "
                                  f"{unknown_key(str(key), ['overrides', *_OTHER_KEYS])}")
        overrides = doc.get("overrides") or {}
        if not isinstance(overrides, dict) or not all(
                isinstance(v, dict | None) for v in overrides.values()):
            raise ConfigError(f"runtime config {path}: overrides must map each tenant to "
                              "its limits")
        for tenant, limits in overrides.items():
            merged[str(tenant)] = dict(limits or {})
    return merged, ignored


def _spelled_under(tenant: str) -> Callable[[tuple[str | int, ...]], str]:
    return lambda loc: ".".join(["overrides", tenant, *map(str, loc)])


def _validated(defaults: LimitsSection, raw: Mapping[str, dict[str, Any]],
               where: str) -> tuple[dict[str, LimitsSection], list[str]]:
    out: dict[str, LimitsSection] = {}
    ignored: list[str] = []
    fields = LimitsSection.model_fields
    loki_keys = LOKI_KEYS["limits_config"]
    base = defaults.model_dump()
    for tenant, limits in raw.items():
        own: dict[str, Any] = {}
        for key, value in limits.items():
            if key in fields:
                own[key] = value
            elif key in loki_keys:
                ignored.append(f"overrides.{tenant}.{key}")
            else:
                path = f"overrides.{tenant}.{key}"
                raise ConfigError(f"{where}: {unknown_key(path, [*fields, *loki_keys])}")
        try:
            out[tenant] = LimitsSection.model_validate({**base, **own})
        except ValidationError as exc:
            msgs = validation_messages(exc, LimitsSection, _spelled_under(tenant))
            raise ConfigError(config_error_text(where, msgs)) from exc
    return out, ignored


class TenantLimits:
    """The limits of each tenant (`get`), re-read from the runtime files (`watch`)."""

    def __init__(self, defaults: LimitsSection,
                 runtime: RuntimeConfigSection | None = None) -> None:
        self.defaults = defaults
        self.files = runtime.files if runtime else []
        self.period = runtime.period if runtime else 10.0
        self._by_tenant: dict[str, LimitsSection] = {}
        self._good: bytes | None = None  # the files' text of the overrides in use
        self._bad: tuple[bytes | None, str] | None = None  # the last failure, logged once
        self.reloads = 0  # versions applied after the first (for tests and logs)

    def get(self, tenant: str) -> LimitsSection:
        return self._by_tenant.get(tenant, self.defaults)

    @property
    def overridden(self) -> list[str]:
        return sorted(self._by_tenant)

    def _text(self) -> bytes:
        parts = []
        for path in self.files:
            try:
                parts.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"cannot read runtime config {path}: {exc.strerror}") \
                    from exc
        return b"\0".join(parts)

    def load(self) -> bool:
        """Read the files now; True when the overrides changed. Raises ConfigError (and
        keeps the overrides in use) when they cannot be used."""
        if not self.files:
            return False
        text = self._text()
        if text == self._good:
            return False
        where = "runtime config " + ", ".join(map(str, self.files))
        raw, ignored = _read_overrides(self.files)
        by_tenant, more = _validated(self.defaults, raw, where)
        first = self._good is None
        self._by_tenant, self._good, self._bad = by_tenant, text, None
        if ignored or more:
            log.warning("%s: these keys of Loki's runtime config have no effect here: %s",
                        where, ", ".join([*ignored, *more]))
        if not first:
            self.reloads += 1
            log.info("%s reloaded: overrides for %d tenant(s)%s", where, len(by_tenant),
                     (": " + ", ".join(self.overridden)) if by_tenant else "")
        return True

    def reload(self) -> bool:
        """`load`, never raising: a bad version is logged once and the last good
        overrides stay."""
        try:
            return self.load()
        except ConfigError as exc:
            try:
                text: bytes | None = self._text()
            except ConfigError:
                text = None
            if (text, str(exc)) != self._bad:
                self._bad = (text, str(exc))
                log.error("%s; keeping the overrides loaded before", exc)
            return False

    async def watch(self) -> None:
        """Re-read the files every `period` until cancelled."""
        while True:
            await asyncio.sleep(self.period)
            await asyncio.to_thread(self.reload)
