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

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sluiceway"

# package -> the sluiceway packages it may import. `durable` is the lowest layer and may
# be imported by all. `ship` does not exist yet: it will sit between buffer/wire and the
# shippers (client, agent).
LAYERS: dict[str, frozenset[str]] = {
    "durable": frozenset(),
    "model": frozenset({"durable"}),
    "wire": frozenset({"model", "durable"}),
    "buffer": frozenset({"durable"}),
    "ship": frozenset({"buffer", "wire", "model", "durable"}),
    "client": frozenset({"ship", "buffer", "wire", "model", "durable"}),
    "agent": frozenset({"ship", "buffer", "wire", "model", "durable"}),
    "store": frozenset({"model", "durable"}),
    "logql": frozenset({"model", "durable"}),
    "ruler": frozenset({"logql", "wire", "model", "durable"}),
    "server": frozenset({"store", "logql", "ruler", "wire", "model", "durable", "buffer",
                         "ui"}),
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
    "model": {"numpy": True, "re2": True, "pydantic": True},
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
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path)
    is_pkg = path.name == "__init__.py"
    out: list[Import] = []

    def walk(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda))
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
    ("cli.py", "MODS = ['sluiceway.server._cli']\nfrom sluiceway.server import serve\n"),
    ("_up.py", "from sluiceway.agent import run\nfrom sluiceway.server import serve\n"),
])
def test_checker_allows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str,
                        source: str) -> None:
    path = _fake_tree(tmp_path, monkeypatch, module, source)
    assert violations_of(path) == []
