"""Where rule groups live, per tenant and namespace, behind one small interface.

- `LocalRuleStore` (Loki's `ruler_storage.backend: local`): rule files under
  `<directory>/<tenant>/`, one namespace per file, named by the file name (extension
  included). Read-only: the API's writes are refused with Loki's texts.
- `FilesystemRuleStore` (`backend: filesystem`): the rules API writes here. A namespace
  is one rule file `<dir>/<tenant>/<namespace>.yaml` (the name %-escaped where it is not
  a plain file name), replaced atomically (`sluiceway.durable.atomic_write`) on every
  change; files put there by hand are read as well.

Cluster mode will add a store over the cluster's KV: the ruler and the API only use
`RuleStore`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

from sluiceway.durable import atomic_write, ensure_dir, fsync_dir
from sluiceway.ruler._rulefmt import RuleFormatError, RuleGroup, dump_rule_file, parse_rule_file


class RuleStoreError(Exception):
    """A rules API request the store refuses: HTTP `status`, `message` as Loki words it;
    `json` when Loki sends its JSON error envelope (as text/plain) rather than the text."""

    def __init__(self, message: str, status: int, json: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.json = message, status, json


@dataclass(slots=True)
class LoadedRules:
    """Everything the ruler evaluates: tenant → namespace → groups, and the files that
    could not be read (path → error), which the ruler shows instead of evaluating."""

    groups: dict[str, dict[str, list[RuleGroup]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class RuleStore(Protocol):
    writable: bool

    def load_all(self) -> LoadedRules: ...

    def list_groups(self, tenant: str) -> dict[str, list[RuleGroup]]: ...

    def get_namespace(self, tenant: str, namespace: str) -> list[RuleGroup]: ...

    def get_group(self, tenant: str, namespace: str, name: str) -> RuleGroup | None: ...

    def set_group(self, tenant: str, namespace: str, group: RuleGroup) -> None: ...

    def delete_group(self, tenant: str, namespace: str, name: str) -> None: ...

    def delete_namespace(self, tenant: str, namespace: str) -> None: ...


def _read_file(path: Path) -> list[RuleGroup]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise RuleStoreError(f"error parsing {path}: {path}: open {path}: no such file or "
                             "directory", 400) from None
    except OSError as exc:
        raise RuleStoreError(f"error parsing {path}: {path}: {exc.strerror}", 400) from None
    try:
        return parse_rule_file(text)
    except RuleFormatError as exc:
        raise RuleStoreError(f"error parsing {path}: {path}: {exc}", 400) from None


def _tenant_dirs(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def _files(tenant_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in tenant_dir.iterdir()
                      if p.is_file() and not p.name.startswith(".") and ".tmp" not in p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


class LocalRuleStore:
    """Rule files read as they are; namespace = file name."""

    writable = False

    def __init__(self, directory: Path) -> None:
        self.root = directory

    def _namespaces(self, tenant_dir: Path, errors: dict[str, str] | None
                    ) -> dict[str, list[RuleGroup]]:
        out: dict[str, list[RuleGroup]] = {}
        for f in _files(tenant_dir):
            try:
                groups = _read_file(f)
            except RuleStoreError as exc:
                if errors is None:
                    raise
                errors[str(f)] = exc.message
                continue
            if groups:
                out[f.name] = groups
        return out

    def load_all(self) -> LoadedRules:
        loaded = LoadedRules()
        for d in _tenant_dirs(self.root):
            loaded.groups[d.name] = self._namespaces(d, loaded.errors)
        return loaded

    def list_groups(self, tenant: str) -> dict[str, list[RuleGroup]]:
        return self._namespaces(self.root / tenant, None)

    def get_namespace(self, tenant: str, namespace: str) -> list[RuleGroup]:
        if "/" in namespace or "\0" in namespace or namespace in ("", ".", ".."):
            path = self.root / tenant / namespace.replace("/", "_").replace("\0", "_")
            raise RuleStoreError(f"error parsing {path}: {path}: open {path}: no such file or "
                                 "directory", 400)
        return _read_file(self.root / tenant / namespace)

    def get_group(self, tenant: str, namespace: str, name: str) -> RuleGroup | None:
        raise RuleStoreError("GetRuleGroup unsupported in rule local store", 400)

    def set_group(self, tenant: str, namespace: str, group: RuleGroup) -> None:
        raise RuleStoreError("SetRuleGroup unsupported in rule local store", 500)

    def delete_group(self, tenant: str, namespace: str, name: str) -> None:
        raise RuleStoreError("DeleteRuleGroup unsupported in rule local store", 500, json=True)

    def delete_namespace(self, tenant: str, namespace: str) -> None:
        raise RuleStoreError("DeleteNamespace unsupported in rule local store", 500, json=True)


def namespace_filename(namespace: str) -> str:
    """A namespace's file name: itself where it is a plain name, %-escaped otherwise, so
    every namespace has exactly one file and back (`namespace_of`)."""
    name = quote(namespace, safe="-_")
    if name.startswith("."):  # no hidden files, no `..`
        name = "%2E" + name[1:]
    return name + ".yaml"


def namespace_of(filename: str) -> str:
    return unquote(filename.removesuffix(".yaml"))


class FilesystemRuleStore:
    """One rule file per namespace, written atomically; the API's store."""

    writable = True

    def __init__(self, directory: Path) -> None:
        self.root = directory
        self._lock = threading.Lock()  # one read-modify-write of a namespace at a time

    def _path(self, tenant: str, namespace: str) -> Path:
        return self.root / tenant / namespace_filename(namespace)

    def _namespaces(self, tenant_dir: Path, errors: dict[str, str] | None
                    ) -> dict[str, list[RuleGroup]]:
        out: dict[str, list[RuleGroup]] = {}
        for f in _files(tenant_dir):
            if not f.name.endswith(".yaml"):
                continue
            try:
                groups = _read_file(f)
            except RuleStoreError as exc:
                if errors is None:
                    raise
                errors[str(f)] = exc.message
                continue
            if groups:
                out[namespace_of(f.name)] = groups
        return out

    def load_all(self) -> LoadedRules:
        loaded = LoadedRules()
        for d in _tenant_dirs(self.root):
            loaded.groups[d.name] = self._namespaces(d, loaded.errors)
        return loaded

    def list_groups(self, tenant: str) -> dict[str, list[RuleGroup]]:
        return self._namespaces(self.root / tenant, None)

    def get_namespace(self, tenant: str, namespace: str) -> list[RuleGroup]:
        path = self._path(tenant, namespace)
        if not path.exists():
            return []
        return _read_file(path)

    def get_group(self, tenant: str, namespace: str, name: str) -> RuleGroup | None:
        return next((g for g in self.get_namespace(tenant, namespace) if g.name == name), None)

    def _write(self, tenant: str, namespace: str, groups: list[RuleGroup]) -> None:
        path = self._path(tenant, namespace)
        if groups:
            ensure_dir(path.parent)
            atomic_write(path, dump_rule_file(groups).encode())
        elif path.exists():
            os.unlink(path)
            fsync_dir(path.parent)

    def set_group(self, tenant: str, namespace: str, group: RuleGroup) -> None:
        with self._lock:
            groups = self.get_namespace(tenant, namespace)
            for i, g in enumerate(groups):
                if g.name == group.name:
                    groups[i] = group
                    break
            else:
                groups.append(group)
            self._write(tenant, namespace, groups)

    def delete_group(self, tenant: str, namespace: str, name: str) -> None:
        with self._lock:
            groups = self.get_namespace(tenant, namespace)
            kept = [g for g in groups if g.name != name]
            if len(kept) != len(groups):
                self._write(tenant, namespace, kept)

    def delete_namespace(self, tenant: str, namespace: str) -> None:
        with self._lock:
            self._write(tenant, namespace, [])
