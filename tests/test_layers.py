"""The import layers of `sluiceway/`, checked with `ast` over every module.

Each package may import only the packages its row of `LAYERS` names (plus itself), and
never a private module (`_name`) or a private name of another package: what a package
offers others is its `__init__`. Imports inside functions and under `TYPE_CHECKING` count
too (they are dependencies all the same), as do `importlib.import_module("...")` calls
with a constant name. A violation is printed as `file:line: what`.

To add a package (e.g. `cluster`), add its row and add it to the rows of those allowed
to import it; a package without a row fails the test until it has one.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sourcescan import parse_source

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sluiceway"

# package -> the sluiceway packages it may import. `durable` is the lowest layer and may
# be imported by all. `ship` (the one delivery path) sits between buffer/wire and the
# shippers (client, agent); nothing else imports it.
LAYERS: dict[str, frozenset[str]] = {
    "durable": frozenset(),
    "model": frozenset({"durable"}),
    "wire": frozenset({"model", "durable"}),
    "buffer": frozenset({"durable"}),
    "ship": frozenset({"buffer", "wire", "model", "durable"}),
    "client": frozenset({"ship", "buffer", "wire", "model", "durable"}),
    # The agent's template, match and decolorize stages use the query engine's own
    # templates, selectors and filters (imported when a pipeline has such a stage).
    "agent": frozenset({"ship", "buffer", "wire", "model", "durable", "logql"}),
    "store": frozenset({"model", "durable"}),
    "logql": frozenset({"model", "durable"}),
    # The logcli-style commands: an HTTP client that parses LogQL to pick the endpoint.
    "logcli": frozenset({"logql", "model", "durable"}),
    "ruler": frozenset({"logql", "wire", "model", "durable"}),
    "patterns": frozenset({"logql", "model", "durable"}),
    # Cluster mode: the write path into JetStream, ingesters over the store, the read
    # path's sources; the server wires it (never the reverse).
    "cluster": frozenset({"store", "logql", "ruler", "wire", "model", "durable"}),
    "server": frozenset({"cluster", "store", "logql", "ruler", "patterns", "wire", "model",
                         "durable", "buffer", "ui"}),
    "ui": frozenset(),  # static files only
}
# Top-level modules (`sluiceway/cli.py`, `__main__.py`, `__init__.py`, `_up.py`) wire
# packages together: they may import any package's public surface, and cli.py each
# package's `_cli` module (its commands).
WIRING = "<top>"
CLI_MODULE = "_cli"

STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
# Third-party imports, for the packages that keep to a short list. A name mapped to
# False may be imported only inside a function (an optional dependency, loaded on use).
THIRD_PARTY: dict[str, dict[str, bool]] = {
    "durable": {},
    "buffer": {"orjson": True, "prometheus_client": False},
    # orjson: a PushRecord's structured metadata (encoded in the workers, read at replay).
    "model": {"numpy": True, "re2": True, "pydantic": True, "orjson": True},
}
# Optional dependencies (extras): the packages that may use each, and only inside a
# function or under TYPE_CHECKING, so `import sluiceway` works without them. The object
# store backends of `store` load their client library when one is made, and the cluster
# package its NATS client when a cluster process starts.
OPTIONAL: dict[str, frozenset[str]] = {
    "obstore": frozenset({"store"}),  # extra `s3`
    "nats": frozenset({"store", "cluster"}),  # extra `cluster`
}


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # dotted module name, or a module plus a name: "sluiceway.store._store"
    names: tuple[str, ...]  # the names of a `from X import a, b`
    top_level: bool  # at module level (not inside a function)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str) -> str:
    """The component a module belongs to: `store` for `sluiceway.store._tenant`, the
    wiring layer for top-level modules and the root package."""
    parts = module.split(".")
    if len(parts) >= 2 and (PKG / parts[1]).is_dir():
        return parts[1]
    return WIRING


def _imports(path: Path) -> list[Import]:
    tree = parse_source(path)
    module = _module_name(path)
    is_pkg = path.name == "__init__.py"
    out: list[Import] = []

    def walk(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            # Imports in a function, or under `if TYPE_CHECKING:`, do not run on import.
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda)) \
                and not _is_type_checking(child)
            if isinstance(child, ast.Import):
                out.extend(Import(child.lineno, a.name, (), top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".")
                    anchor = anchor if is_pkg else anchor[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                out.append(Import(child.lineno, base, tuple(a.name for a in child.names), top))
            elif (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                  and child.func.attr == "import_module" and child.args
                  and isinstance(child.args[0], ast.Constant)
                  and isinstance(child.args[0].value, str)):
                out.append(Import(child.lineno, child.args[0].value, (), top))
            walk(child, inner)

    walk(tree, True)
    # Tables of module names handed to import_module later (cli.py's list of commands):
    # strings in a list or tuple that name a module of the tree.
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            out.extend(Import(e.lineno, e.value, (), True) for e in node.elts
                       if isinstance(e, ast.Constant) and isinstance(e.value, str)
                       and _is_module(e.value))
    return out


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_module(name: str) -> bool:
    parts = name.split(".")
    if parts[0] != "sluiceway" or not all(p.isidentifier() for p in parts):
        return False
    path = PKG.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private(parts: list[str]) -> str | None:
    return next((p for p in parts if p.startswith("_") and not p.startswith("__")), None)


def violations_of(path: Path) -> list[str]:
    """Every import of one module that breaks a rule, as `file:line: what`."""
    rel = path.relative_to(ROOT)
    module = _module_name(path)
    mine = _package_of(module)
    found: list[str] = []
    for imp in _imports(path):
        where = f"{rel}:{imp.line}"
        top = imp.target.split(".")[0]
        if top in OPTIONAL:
            if mine not in OPTIONAL[top]:
                found.append(f"{where}: {mine} may not import the optional dependency "
                             f"{imp.target} (only {', '.join(sorted(OPTIONAL[top]))})")
            elif imp.top_level:
                found.append(f"{where}: the optional dependency {imp.target} is imported "
                             "at module level; import it inside the function that needs it "
                             "(or under TYPE_CHECKING)")
            continue
        if top != "sluiceway":
            allowed = THIRD_PARTY.get(mine)
            if allowed is not None and top not in STDLIB and top and \
                    not (top in allowed and (allowed[top] or not imp.top_level)):
                found.append(f"{where}: {mine} may import only the stdlib"
                             f"{' and ' + ', '.join(sorted(allowed)) if allowed else ''},"
                             f" not {imp.target}")
            continue
        targets = [imp.target]
        if imp.target == "sluiceway":  # `from sluiceway import client` names a package
            targets = [f"sluiceway.{n}" for n in imp.names
                       if (PKG / n).is_dir() or (PKG / f"{n}.py").is_file()] or targets
        for target in targets:
            theirs = _package_of(target)
            if theirs == mine and mine != WIRING:
                continue
            if theirs == WIRING:
                if target == "sluiceway" or mine == WIRING:
                    continue  # the root package (__version__); wiring among itself
                found.append(f"{where}: {mine} imports the wiring module {target}")
                continue
            if mine != WIRING and theirs not in LAYERS.get(mine, frozenset()):
                found.append(f"{where}: {mine} may not import {theirs} ({target})")
            sub = target.split(".")[2:]
            names = list(imp.names) if target == imp.target else []
            private = _private(sub) or _private(names)
            if private is not None and not (mine == WIRING and sub == [CLI_MODULE]):
                found.append(f"{where}: private {private} of {theirs} imported from "
                             f"{mine} ({target}{' import ' + ', '.join(names) if names else ''});"
                             f" import it from sluiceway.{theirs}")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "static" not in p.parts)


def test_every_package_has_a_row() -> None:
    pkgs = sorted(p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith("_")
                  and (p / "__init__.py").is_file())
    missing = [p for p in pkgs if p not in LAYERS]
    assert not missing, f"packages without a row in LAYERS: {missing}"


def test_import_layers() -> None:
    found = [v for p in _modules() for v in violations_of(p)]
    for v in found:
        print(v)
    assert not found, "import layer violations:\n" + "\n".join(found)


# --- the checker itself -------------------------------------------------------------------

def _fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str,
               source: str) -> Path:
    """A tree of empty packages (plus `cli.py` and `server/_cli.py`, `server/_app.py`)
    with `source` at `module`, checked instead of the real one."""
    fake = tmp_path / "sluiceway"
    for pkg in LAYERS:
        (fake / pkg).mkdir(parents=True)
        (fake / pkg / "__init__.py").write_text("")
    for name in ("__init__.py", "cli.py", "server/_cli.py", "server/_app.py"):
        (fake / name).write_text("")
    path = fake / module
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    return path


@pytest.mark.parametrize(("module", "source", "expect"), [
    ("server/_x.py", "from sluiceway.store._store import index_stats\n",
     "private _store of store"),
    ("server/_x.py", "def f():\n    import sluiceway.agent\n", "server may not import agent"),
    ("server/_x.py", "from sluiceway import client\n", "server may not import client"),
    ("agent/_x.py", "from sluiceway.model._timefmt import now_ns\n", "private _timefmt"),
    ("store/_x.py", "from sluiceway.model import _secret\n", "private _secret"),
    ("logql/_x.py", "from sluiceway.store import Store\n", "logql may not import store"),
    ("wire/_x.py", "from sluiceway.server import Config\n", "wire may not import server"),
    ("model/_x.py", "from sluiceway.wire import decode_push\n", "model may not import wire"),
    ("durable/_x.py", "import numpy\n", "durable may import only the stdlib"),
    ("buffer/_x.py", "import prometheus_client\n", "buffer may import only the stdlib"),
    ("buffer/_x.py", "from sluiceway.model import Bytes\n", "buffer may not import model"),
    ("store/_x.py", "import sluiceway.cli\n", "wiring module"),
    ("agent/_x.py", "from .. import server\n", "agent may not import server"),
    ("agent/_x.py", "from ..server import _app\n", "private _app of server"),
    ("store/_x.py", "MODS = ['sluiceway.server._cli']\n", "store may not import server"),
    ("cli.py", "MODS = [('x', 'sluiceway.server._app')]\n", "private _app of server"),
    ("cli.py", "import importlib\nimportlib.import_module('sluiceway.server._app')\n",
     "private _app of server"),
    ("server/_x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from sluiceway.client import Logger\n", "server may not import client"),
    ("store/_x.py", "import obstore\n", "optional dependency obstore is imported at module"),
    ("store/_x.py", "from nats.js import api\n", "optional dependency nats.js"),
    ("server/_x.py", "def f():\n    import nats\n", "server may not import the optional"),
    ("agent/_x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    import obstore\n", "agent may not import the optional dependency obstore"),
    # ship: between buffer/wire and the shippers, below both of them
    ("ship/_x.py", "from sluiceway.client import LokiSink\n", "ship may not import client"),
    ("ship/_x.py", "def f():\n    import sluiceway.agent\n", "ship may not import agent"),
    ("ship/_x.py", "from sluiceway.store import Store\n", "ship may not import store"),
    ("buffer/_x.py", "from sluiceway.ship import Part\n", "buffer may not import ship"),
    ("wire/_x.py", "from sluiceway.ship import PushClient\n", "wire may not import ship"),
    ("server/_x.py", "from sluiceway.ship import Watch\n", "server may not import ship"),
    ("agent/_x.py", "from sluiceway.ship._loop import DeliveryLoop\n", "private _loop of ship"),
    ("client/_x.py", "from sluiceway.wire import _answer\n", "private _answer of wire"),
])
def test_checker_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str,
                       source: str, expect: str) -> None:
    """Each rule catches its violation (the module is written into a copy of the tree's
    shape, so the real tree stays untouched)."""
    path = _fake_tree(tmp_path, monkeypatch, module, source)
    found = violations_of(path)
    assert any(expect in v for v in found), found
    assert all(v.startswith(f"sluiceway/{module}:") for v in found), found


@pytest.mark.parametrize(("module", "source"), [
    ("server/_x.py", "from sluiceway.store import Store\nfrom sluiceway import __version__\n"),
    ("store/_x.py", "from sluiceway.store._tenant import TenantStore\n"),
    ("store/_x.py", "from . import _tenant\nfrom ._chunk import ChunkError\n"),
    ("buffer/_x.py", "def f():\n    import prometheus_client\n"),
    ("buffer/_x.py", "import typing\nif typing.TYPE_CHECKING:\n    import prometheus_client\n"),
    ("store/_x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from obstore.store import S3Store\ndef f():\n    import obstore\n"),
    ("cli.py", "MODS = ['sluiceway.server._cli']\nfrom sluiceway.server import serve\n"),
    ("_up.py", "from sluiceway.agent import run\nfrom sluiceway.server import serve\n"),
    ("ship/_x.py", "from sluiceway.buffer import Buffer\nfrom sluiceway.wire import PushAnswer\n"
     "from sluiceway.model import Heartbeat\nfrom sluiceway.durable import atomic_write\n"),
    ("ship/_x.py", "from sluiceway.ship._loop import Part\n"),
    ("client/_x.py", "from sluiceway.ship import DeliveryLoop, PushClient\n"),
    ("agent/_x.py", "from sluiceway.ship import Push, PushDeliverer\n"),
])
def test_checker_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str,
                        source: str) -> None:
    path = _fake_tree(tmp_path, monkeypatch, module, source)
    assert violations_of(path) == []


# --- one delivery path ----------------------------------------------------------------------

# What only `sluiceway.ship` does for the shippers: reading a push answer, Retry-After, the
# push latency histogram, HTTP POSTs (pushes, heartbeats). (The agent's own input
# counters are its own, so counter families are not on the list.)
SHIP_ONLY_NAMES = frozenset({"classify_push_answer", "parse_retry_after",
                             "HistogramMetricFamily"})
SHIPPERS = ("client", "agent")


def delivery_copies_in(path: Path) -> list[str]:
    """Pieces of the delivery path a shipper module does itself instead of `ship`."""
    rel = path.relative_to(ROOT)
    found = [f"{rel}:{imp.line}: imports {name} (the delivery path is sluiceway.ship's)"
             for imp in _imports(path) for name in imp.names if name in SHIP_ONLY_NAMES]
    for node in ast.walk(parse_source(path)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "post"):
            found.append(f"{rel}:{node.lineno}: an HTTP POST of its own (pushes and "
                         f"heartbeats go through sluiceway.ship)")
    return found


def test_client_and_agent_keep_no_copy_of_the_delivery_path() -> None:
    found = [v for p in _modules() if _package_of(_module_name(p)) in SHIPPERS
             for v in delivery_copies_in(p)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("source", "expect"), [
    ("from sluiceway.wire import classify_push_answer\n", "imports classify_push_answer"),
    ("from sluiceway.wire import parse_retry_after as p\n", "imports parse_retry_after"),
    ("def f():\n    from prometheus_client.core import HistogramMetricFamily\n",
     "imports HistogramMetricFamily"),
    ("import httpx\nhttpx.Client().post('u', content=b'')\n", "an HTTP POST of its own"),
])
def test_copy_checker_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                            expect: str) -> None:
    path = _fake_tree(tmp_path, monkeypatch, "agent/_x.py", source)
    found = delivery_copies_in(path)
    assert any(expect in v for v in found), found
