"""``flownb serve`` from a terminal: a notebook served, and bad input in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.server.conftest import client, wait_for_status

pytestmark = pytest.mark.slow


def test_a_notebook_is_served_and_its_runs_start_through_its_cells(server_process, db: str, tmp_path: Path) -> None:
    nb = new_notebook(cells=[
        new_code_cell("factor = 10"),  # set-up: runs once when the server loads the notebook
        new_code_cell("%%step scaled\nscaled = params['x'] * factor"),
        new_code_cell("%%step shown\nprint('scaled is', scaled)"),
    ])
    path = tmp_path / "scale.ipynb"
    nbformat.write(nb, path)
    api = client(server_process([str(path)], db).url)
    flows = api.get("/api/flows").json()["flows"]
    assert [(f["name"], f["source"]) for f in flows] == [("scale", str(path))]  # named after the notebook
    run_id = api.post("/api/flows/scale/runs", json={"params": {"x": 4}}).json()["run_id"]
    run = wait_for_status(api, run_id, {"succeeded"})
    assert run["trigger"] == "api"
    assert [s["stdout"] for s in run["steps"] if s["step"] == "shown"] == ["scaled is 40\n"]


def _serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flownb.cli", "serve", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, says in (
        (["nope.ipynb"], "no notebook nope.ipynb"),
        (["flows.py"], "neither NOTEBOOK.ipynb nor FILE.py:FLOW"),
        ([str(Path(__file__).parent / "flowdefs.py") + ":quick", "--rate", "0"], "--rate"),
    ):
        done = _serve(*args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(str(Path(__file__).parent / "flowdefs.py") + ":quick", "--port", str(port), "--db", db,
                      cwd=tmp_path)
    assert done.returncode == 2
    assert "could not listen on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr
