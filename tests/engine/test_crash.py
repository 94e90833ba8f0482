"""Crash tests: SIGKILL a real process mid-run, resume from a fresh one.

Checks the guarantee: a step whose success was committed is never executed
again; the resumed outputs equal an uninterrupted run's; no history is lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

SCRIPT = Path(__file__).with_name("crash_flow.py")
ROOT = Path(__file__).parents[2]


def _python(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _rows(db: str, run_id: str) -> set[tuple[str, int, str]]:
    con = duckdb.connect(db, read_only=True)
    try:
        got = con.execute("SELECT step, attempt, status FROM steps WHERE run_id = ?", [run_id]).fetchall()
    finally:
        con.close()
    return {(s, a, st) for s, a, st in got}


@pytest.fixture(scope="module")
def clean_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("clean")
    result = _finish(_python("run", str(tmp / "clean.duckdb"), str(tmp / "side.txt")))
    assert result["status"] == "succeeded"
    return result["outputs"]  # type: ignore[return-value]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 3, 5, 7])
def test_sigkill_then_resume_runs_committed_steps_exactly_once(
    tmp_path: Path, kill_after: int, clean_outputs: dict[str, object]
) -> None:
    db, side = str(tmp_path / "crash.duckdb"), tmp_path / "side.txt"
    proc = _python("run", db, str(side))
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = side.read_text().count("start") if side.exists() else 0
        if started >= kill_after:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    before = _rows(db, run_id)
    committed = {s for s, _, st in before if st == "succeeded"}
    con = duckdb.connect(db, read_only=True)
    status = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
    con.close()
    assert status is not None and status[0] in ("running", "interrupted")

    result = _finish(_python("resume", db, str(side), run_id))
    assert result["status"] == "succeeded"
    assert result["outputs"] == clean_outputs

    runs = Counter(line.split()[1] for line in side.read_text().splitlines())
    for step in committed:
        assert runs[step] == 1, f"{step} committed before the kill but ran {runs[step]} times"
    assert set(runs) == set(clean_outputs)
    after = _rows(db, run_id)
    assert before <= after, f"history rows lost: {before - after}"
    con = duckdb.connect(db, read_only=True)
    final = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
    con.close()
    assert final == ("succeeded",)
