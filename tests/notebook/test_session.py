"""The headless entry point the CLI uses: a plain InteractiveShell, no kernel, no widgets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
from IPython.core.interactiveshell import InteractiveShell
from flownb.notebook.session import Session

shell = InteractiveShell.instance()
session = Session.load(shell, live=False)
session.execute_notebook(sys.argv[1])
run = session.start(params={"n": 4}, approve=["all"]).wait(60)
print("RESULT", run.status, run.outputs["total"], shell.user_ns["total"])
"""


def test_a_notebook_runs_headless_through_the_session(tmp_path: Path) -> None:
    nb = new_notebook()
    nb.cells = [
        new_code_cell("%load_ext flownb"),
        new_code_cell('%%step nums\nnums = list(range(params["n"]))'),
        new_code_cell("%step ok --kind approval"),
        new_code_cell("%%step total --after ok\ntotal = sum(nums)"),
        new_code_cell("%flow run --wait"),  # skipped: the caller starts the run
    ]
    path = tmp_path / "mini.ipynb"
    nbformat.write(nb, path)
    env = dict(os.environ, FLOWNB_DB=str(tmp_path / "store.duckdb"))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert "RESULT succeeded 6 6" in done.stdout, done.stdout + done.stderr
