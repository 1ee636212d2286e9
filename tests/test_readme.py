"""The README carries the docs of every component; it must not drift from them, nor from
itself: it starts with the two commands, its table of contents lists its headings, every
relative link and image in it and in docs/ resolves, and its FastAPI snippet runs."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.procs import REPO, ServerProcess, _die_with_test_process, free_port

README = REPO / "README.md"


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_readme", REPO / "scripts/build_readme.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _outside_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def test_readme_sections_are_current() -> None:
    r = subprocess.run([sys.executable, "scripts/build_readme.py", "--check"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text()
    first = re.search(r"^```\w*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert first is not None
    before = text[:first.start()]
    assert before.strip() == "# Sluiceway", "nothing but the title comes before the commands"
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make up", "make test"]


def test_the_first_screen_has_ports_data_and_next_steps() -> None:
    first_screen = README.read_text().split("\n## Contents")[0]
    for needle in ("http://127.0.0.1:3100", "http://127.0.0.1:9080", "./data",
                   "positions.json", "spill", 'job="demo"', "Loki* data source",
                   "Migrating from Promtail", "RequestContextMiddleware"):
        assert needle in first_screen, needle


def test_toc_lists_every_section_and_only_real_anchors() -> None:
    text = README.read_text()
    build = _builder()
    m = re.search(r"<!-- toc -->\n(.*?)<!-- end toc -->", text, re.DOTALL)
    assert m is not None, "README.md has no table of contents"
    listed = re.findall(r"\]\(#([^)]+)\)", m.group(1))
    anchors = build.anchors(text)
    real = {slug for _, _, slug in anchors}
    assert set(listed) <= real, set(listed) - real
    toc_heading = text[:m.start()].rstrip().splitlines()[-1]
    part = ""
    for level, title, slug in anchors:
        part = title if level == 2 else part
        if toc_heading == f"## {title}" or (level == 3 and title == part):
            continue  # the toc's own heading; a `###` repeating its part's title
        if level in (2, 3, 4):
            assert slug in listed, f"{title!r} is not in the table of contents"
    assert len(listed) == len(set(listed))


def _md_files() -> list[Path]:
    return [README, REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_every_relative_link_and_image_resolves() -> None:
    build = _builder()
    broken = []
    for md in _md_files():
        body = _outside_fences(md.read_text())
        body = re.sub(r"`[^`\n]*`", "", body)  # code spans are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", body):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, frag = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                broken.append(f"{md.relative_to(REPO)}: {target} (no such file)")
            elif frag and dest.suffix == ".md" and frag not in {
                    slug for _, _, slug in build.anchors(dest.read_text())}:
                broken.append(f"{md.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_fastapi_snippet_runs_and_flushes_on_sigterm(tmp_path: Path) -> None:
    """The snippet of the first screen, as it is written, run by a real uvicorn logging to
    a real server (its URL swapped in); SIGTERM must not lose the request's record."""
    first_screen = README.read_text().split("\n## Contents")[0]
    m = re.search(r"```python\n(.*?)```", first_screen, re.DOTALL)
    assert m is not None
    code = "\n".join(line[2:] if line.startswith("  ") else line
                     for line in m.group(1).splitlines())
    srv = ServerProcess(tmp_path / "data").start()
    try:
        (tmp_path / "app.py").write_text(code.replace("http://127.0.0.1:3100", srv.url))
        port = free_port()
        app = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--port",
                                str(port), "--log-level", "warning"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               preexec_fn=_die_with_test_process,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            deadline = time.monotonic() + 60
            while True:
                assert app.poll() is None, app.stdout.read() if app.stdout else ""
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/orders/42", timeout=2)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "the app did not start"
                    time.sleep(0.1)
            assert r.json() == {"order_id": 42}
            assert "x-request-id" in r.headers
            app.send_signal(signal.SIGTERM)
            assert app.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        finally:
            if app.poll() is None:
                app.kill()
                app.wait()
        # the record was flushed before uvicorn exited: it is in the server now
        q = httpx.get(f"{srv.url}/loki/api/v1/query_range",
                      params={"query": '{app="orders"} |= "Fetching order"', "limit": 10},
                      timeout=10).json()
        lines = [v[1] for s in q["data"]["result"] for v in s["values"]]
        assert len(lines) == 1 and "42" in lines[0], q
    finally:
        srv.stop()


def _help(*cmd: str) -> str:
    return subprocess.run([sys.executable, "-m", "sluiceway", *cmd, "--help"], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}).stdout


@pytest.mark.parametrize("cmd", ["up", "server", "agent", "query", "labels", "series",
                                 "volume"])
def test_flags_shown_for_a_command_exist(cmd: str) -> None:
    """Every `--flag` the README shows after `sluiceway <cmd> [<subcommand>]` on one line is
    in that command's --help."""
    text = README.read_text()
    helps = {"": _help(cmd)}
    for sub in ("status", "convert"):
        if sub in helps[""]:
            helps[sub] = _help(cmd, sub)
    missing = set()
    for line in re.findall(rf"sluiceway {cmd} ([^\n`]*)", text):
        first = line.split(" ")[0]
        help_text = helps.get(first, helps[""])
        missing |= {f for f in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", line)
                    if f not in help_text}
    assert not missing, f"sluiceway {cmd}: {sorted(missing)} not in --help"
