"""Lint and types are part of the test command, so `.ci/run` (the README's command) checks them.

Each check runs the tool as a user would from the repository's root, with the same
interpreter as pytest, and shows the tool's own report when it fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    done = run_tool("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_checks_tests_and_benchmarks() -> None:
    # the package is not the only code users read: a config change must not drop these folders
    done = run_tool("ruff", "check", "--show-files", ".")
    assert done.returncode == 0, done.stdout + done.stderr
    checked = {Path(line).relative_to(ROOT).parts[0] for line in done.stdout.splitlines() if line.startswith(str(ROOT))}
    assert {"flownb", "tests", "benchmarks"} <= checked, sorted(checked)


def test_mypy_strict_is_clean() -> None:
    # --strict spelled out, so the check does not depend on [tool.mypy] keeping strict = true
    done = run_tool("mypy", "--strict", "flownb")
    assert done.returncode == 0, done.stdout + done.stderr
