"""The README carries the docs of every component; it must not drift from them."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO


def test_readme_sections_are_current() -> None:
    r = subprocess.run([sys.executable, "scripts/build_readme.py", "--check"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_starts_with_the_two_commands() -> None:
    head = (REPO / "README.md").read_text().split("\n## ")[0]
    assert "make up" in head and "make test" in head
