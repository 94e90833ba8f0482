"""Bad input to ``flownb run`` is one line on stderr and exit status 2, never a traceback.

Run through the installed ``flownb`` command, as cron or CI would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOOD_CELL = {"cell_type": "code", "id": "c1", "metadata": {}, "outputs": [], "execution_count": None}


def _command() -> list[str]:
    beside = Path(sys.executable).parent / "flownb"  # the console script of this environment
    found = str(beside) if beside.exists() else shutil.which("flownb")
    return [found] if found else [sys.executable, "-m", "flownb.cli"]


def flownb(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWNB_DB": str(tmp_path / "bad.duckdb"), "COLUMNS": "80"}
    return subprocess.run([*_command(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and 1 <= len(lines) <= 2, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def _notebook(**top: object) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, **top})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not json {", "is not JSON"),
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (_notebook().encode(), "cells"),
        (_notebook(cells=[{**GOOD_CELL, "source": 5}]).encode(), "cells[0].source"),
        (bytes(range(256)) * 4, "is not UTF-8"),
        (b"[1, 2, 3]", "not a notebook"),
        (b'{"cells": []}', "'nbformat'"),
        (b'{"nbformat": 99, "nbformat_minor": 0, "cells": []}', "version 99"),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["not-json", "empty", "blank", "no-cells", "source-5", "random-bytes", "a-list", "no-version",
         "version-99", "deep"],  # fmt: skip
)
def test_a_broken_notebook_is_one_line_and_exit_two(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "broken.ipynb").write_bytes(content)
    done = flownb(tmp_path, "run", "broken.ipynb")
    assert_one_clear_line(done, "broken.ipynb", expected)


def test_a_python_file_that_exits_while_loading_is_reported(tmp_path: Path) -> None:
    (tmp_path / "quits.py").write_text("import sys\nimport flownb\nflow = flownb.Flow('q')\nsys.exit(3)\n")
    done = flownb(tmp_path, "run", "quits.py:flow")
    assert_one_clear_line(done, "quits.py", "sys.exit(3)")


@pytest.mark.parametrize("value", ["-1", "nan", "0", "inf", "soon"])
def test_a_bad_timeout_is_one_line_and_exit_two(tmp_path: Path, value: str) -> None:
    (tmp_path / "ok.py").write_text("import flownb\nflow = flownb.Flow('ok')\nflow.shell('s', 'true')\n")
    done = flownb(tmp_path, "run", "ok.py:flow", f"--timeout={value}")
    assert_one_clear_line(done, "--timeout")
