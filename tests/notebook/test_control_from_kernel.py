"""%flow pause / resume / cancel of a run that a `flownb run` process owns, from a real kernel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flownb
from tests.engine.test_control import DEADLINE, PIPELINE, until

pytestmark = pytest.mark.slow


def test_a_kernel_pauses_resumes_and_cancels_a_cli_run(
    tmp_path: Path, kernel_env: dict[str, str], start_kernel: Any
) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    db = kernel_env["FLOWNB_DB"]
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    env = dict(kernel_env)
    with subprocess.Popen(
        [sys.executable, "-m", "flownb.cli", "run", "pipeline.py:flow"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        until(lambda: not flownb.history(db).empty, "the CLI's run")
        run = flownb.attach(str(flownb.history(db).iloc[0]["run_id"]), db)
        until(lambda: run.step_status.get("first") == "running", "the first step to start")
        k = start_kernel()
        k.execute(f"%flow pause {run.id}")
        until(lambda: run.status == "paused", "the run to pause")
        k.execute(f"%flow resume {run.id}")
        until(lambda: run.status == "running", "the run to go on")
        out = k.execute(f"%flow cancel {run.id[:6]}")
        assert f"cancelling run {run.id}" in out["stdout"]
        assert run.wait(DEADLINE).status == "cancelled"
        assert proc.wait(DEADLINE) == 1
