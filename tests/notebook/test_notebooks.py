"""The example notebooks run headless under nbval, each with a throwaway store.

The same command works by hand:
    FLOWNB_DB=/tmp/x.duckdb pytest --nbval-lax notebooks/quickstart.ipynb
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["quickstart", "approvals", "history"])
def test_notebook_runs_under_nbval(name: str, tmp_path: Path) -> None:
    env = dict(os.environ, FLOWNB_DB=str(tmp_path / "store.duckdb"))
    env.pop("JPY_SESSION_NAME", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", str(NOTEBOOKS / f"{name}.ipynb"), "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-o", "addopts=", "-W", "ignore::DeprecationWarning"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
