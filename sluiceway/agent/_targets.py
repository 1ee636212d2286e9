"""The targets of a file input: which globs to tail and with which labels.

A target is a label set with `__path__` (a glob) and optionally `__path_exclude__`; after
`relabel_configs` the labels that do not start with `__` are the streams' labels. Targets
come from the input's `paths` and `labels`, from `file_sd` files (Prometheus' file-based
discovery, re-read when they change or every `refresh_interval`), or from the node's pod
log directory `<root>/<namespace>_<pod>_<uid>/<container>/` (`kubernetes_pods`), which
gives the `__meta_kubernetes_*` labels that path holds.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sluiceway.agent._config import FileInput, FileSD, KubernetesPods
from sluiceway.agent._relabel import Relabeler, public

log = logging.getLogger("sluiceway.agent")

# What the pod log directory tells about a container; anything else Kubernetes' API
# would give (pod labels, annotations, node name, ...) is not there.
KUBERNETES_LABELS = ("__meta_kubernetes_namespace", "__meta_kubernetes_pod_name",
                     "__meta_kubernetes_pod_uid", "__meta_kubernetes_pod_container_name")


@dataclass(frozen=True, slots=True)
class Target:
    path: str  # a glob
    exclude: str | None
    labels: dict[str, str]


class Targets:
    def __init__(self, cfg: FileInput) -> None:
        self.cfg = cfg
        self.relabel = Relabeler(cfg.relabel_configs)
        self._warned: set[str] = set()
        self._sd_groups: list[dict[str, str]] = []
        self._sd_seen: dict[str, float] = {}
        self._sd_read = 0.0

    def _raw(self) -> list[dict[str, str]]:
        d = self.cfg.discovery
        if isinstance(d, FileSD):
            return self._file_sd(d)
        if isinstance(d, KubernetesPods):
            return self._pods(d)
        return [{**self.cfg.labels, "__path__": p, "__address__": "localhost"}
                for p in self.cfg.paths]

    def current(self) -> list[Target]:
        out: list[Target] = []
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for raw in self._raw():
            labels = self.relabel.apply(raw) if self.relabel else raw
            if labels is None:
                continue
            path = labels.get("__path__")
            if not path:
                self._warn_once("no __path__", "a target has no __path__ after relabeling "
                                "(it is skipped): %s", sorted(raw.items()))
                continue
            t = Target(path, labels.get("__path_exclude__") or None, public(labels))
            key = (t.path, tuple(sorted(t.labels.items())))
            if key not in seen:
                seen.add(key)
                out.append(t)
        return out

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    # -- file_sd -------------------------------------------------------------------------
    def _file_sd(self, d: FileSD) -> list[dict[str, str]]:
        files = sorted({f for pattern in d.files for f in glob.glob(pattern)})
        stamps = {}
        for f in files:
            try:
                stamps[f] = os.stat(f).st_mtime
            except OSError:
                continue
        due = time.monotonic() - self._sd_read >= d.refresh_interval
        if stamps == self._sd_seen and not due:
            return self._sd_groups
        groups: list[dict[str, str]] = []
        for f in stamps:
            try:
                text = Path(f).read_text()
                doc = json.loads(text) if f.endswith(".json") else yaml.safe_load(text)
                if not isinstance(doc, list):
                    raise ValueError("not a list of target groups")
                for g in doc:
                    labels = {str(k): str(v) for k, v in (g.get("labels") or {}).items()}
                    for t in g.get("targets") or ["localhost"]:
                        groups.append({**labels, "__address__": str(t), "__meta_filepath": f})
            except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
                self._warn_once(f"sd:{f}:{stamps[f]}", "file_sd %s cannot be used (%s); "
                                "keeping its previous targets", f, exc)
                groups += [g for g in self._sd_groups if g.get("__meta_filepath") == f]
        self._sd_groups, self._sd_seen, self._sd_read = groups, stamps, time.monotonic()
        return groups

    # -- kubernetes pods -------------------------------------------------------------------
    def _pods(self, d: KubernetesPods) -> list[dict[str, str]]:
        out = []
        try:
            pods = sorted(os.scandir(d.root), key=lambda e: e.name)
        except OSError as exc:
            self._warn_once("pods-root", "cannot list %s: %s", d.root, exc)
            return []
        for pod in pods:
            parts = pod.name.split("_")
            if len(parts) != 3 or not pod.is_dir():
                continue
            ns, name, uid = parts
            if d.namespaces and ns not in d.namespaces:
                continue
            try:
                containers = sorted(e.name for e in os.scandir(pod.path) if e.is_dir())
            except OSError:
                continue
            for c in containers:
                out.append(dict(zip(KUBERNETES_LABELS, (ns, name, uid, c), strict=True)))
        return out
