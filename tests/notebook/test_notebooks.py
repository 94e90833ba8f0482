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

from tests.servers import MessagesServer

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["quickstart", "approvals", "history", "agents", "dask"])
def test_notebook_runs_under_nbval(name: str, tmp_path: Path) -> None:
    env = dict(os.environ, FLOWNB_DB=str(tmp_path / "store.duckdb"))
    env.pop("JPY_SESSION_NAME", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", str(NOTEBOOKS / f"{name}.ipynb"), "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-o", "addopts=", "-W", "ignore::DeprecationWarning"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_agents_notebook_with_a_key_talks_to_a_messages_api(tmp_path: Path) -> None:
    """With ANTHROPIC_API_KEY set, its agent step runs (here against a local Messages API)."""
    with MessagesServer() as server:
        env = dict(os.environ, FLOWNB_DB=str(tmp_path / "store.duckdb"), ANTHROPIC_API_KEY="test-key",
                   ANTHROPIC_BASE_URL=server.url, FLOWNB_MODEL="claude-haiku-4-5")  # fmt: skip
        env.pop("JPY_SESSION_NAME", None)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval-lax", str(NOTEBOOKS / "agents.ipynb"), "-q",
             "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-o", "addopts=", "-W", "ignore::DeprecationWarning"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert len(server.requests) == 1
        assert "flownb records every attempt" in server.requests[0].body.decode()
