"""``flownb run NOTEBOOK.ipynb``: set-up cells, %%step cells, params, bad notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


def flownb(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWNB_DB": str(tmp_path / "nb.duckdb")}
    return subprocess.run(
        [sys.executable, "-m", "flownb.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )


def test_a_notebook_runs_headless_with_params(tmp_path: Path) -> None:
    notebook(
        tmp_path / "report.ipynb",
        "%load_ext flownb",
        "FACTOR = 3  # set-up: a constant the steps read",
        "%%step numbers\nnumbers = list(range(params['n']))",
        "%%step total\ntotal = sum(numbers) * FACTOR\nprint('total', total)",
        "view = %flow run --wait",
        "assert total > 0  # analysis after the run: skipped headless",
    )
    done = flownb(tmp_path, "run", "report.ipynb", "--param", "n=5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    out = flownb(tmp_path, "sql", "SELECT step, stdout FROM steps WHERE step = 'total'", "--json")
    assert json.loads(out.stdout) == [{"step": "total", "stdout": "total 30\n"}]
    runs = flownb(tmp_path, "sql", "SELECT flow, count(*) AS n FROM runs GROUP BY flow", "--json")
    assert json.loads(runs.stdout) == [{"flow": "report", "n": 1}]  # one run, named after the notebook


def test_a_failing_step_exits_one(tmp_path: Path) -> None:
    notebook(tmp_path / "bad.ipynb", "%load_ext flownb", "%%step broken\nraise ValueError('no data')")
    done = flownb(tmp_path, "run", "bad.ipynb")
    assert done.returncode == 1
    assert "no data" in done.stdout and "flownb resume" in done.stdout


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["%load_ext flownb", "x = 1"], "defines no steps"),
        (["%load_ext flownb", "%%step broken\nx = (1 +"], "broken"),
        (["%load_ext flownb", "raise RuntimeError('set-up failed')"], "cell [2]"),
    ],
)
def test_bad_notebooks_are_one_line_and_exit_two(tmp_path: Path, cells: list[str], message: str) -> None:
    notebook(tmp_path / "nb.ipynb", *cells)
    done = flownb(tmp_path, "run", "nb.ipynb")
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_resume_reloads_the_notebook_the_run_recorded(tmp_path: Path) -> None:
    flag = tmp_path / "broken.flag"
    flag.write_text("yes")
    notebook(
        tmp_path / "etl.ipynb",
        "%load_ext flownb",
        "from pathlib import Path",
        f"%%step extract\nextract = [3, 1, 2]\nwith open({str(tmp_path / 'extract.log')!r}, 'a') as _f:\n    _f.write('ran\\n')",
        f"%%step load\nif Path({str(flag)!r}).exists():\n    raise RuntimeError('warehouse down')\nload = sorted(extract)",
    )
    first = flownb(tmp_path, "run", "etl.ipynb")
    assert first.returncode == 1
    run_id = first.stdout.split("flownb resume ")[1].split()[0]
    flag.unlink()
    again = flownb(tmp_path, "resume", run_id[:8])
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "extract.log").read_text() == "ran\n"  # restored, not run again
    out = flownb(tmp_path, "sql", "SELECT status FROM runs", "--json")
    assert json.loads(out.stdout) == [{"status": "succeeded"}]
