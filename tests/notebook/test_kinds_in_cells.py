"""Every step kind from the magics: the cell body is the kind's main option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.servers import HttpServer

pytestmark = pytest.mark.slow


def test_http_shell_wasm_and_subflow_cells_run_headless(tmp_path: Path) -> None:
    nb = new_notebook()
    nb.cells = [
        new_code_cell("%load_ext flownb"),
        new_code_cell("%%step fetch --kind http\nGET {{ params.base }}/json\nAccept: application/json"),
        new_code_cell('%%step hello --kind shell\necho "got {{ fetch.json.hello }}"'),
        new_code_cell('%step words --kind wasm --module wordcount --input "{{ hello.stdout }}"'),
        new_code_cell("%%step seed --flow child\nseed = 21"),
        new_code_cell("%step inner --kind subflow --subflow child"),
    ]
    nbformat.write(nb, tmp_path / "kinds.ipynb")
    env = dict(os.environ, FLOWNB_DB=str(tmp_path / "store.duckdb"))
    env.pop("JPY_SESSION_NAME", None)
    with HttpServer() as server:
        done = subprocess.run(
            [sys.executable, "-m", "flownb.cli", "run", "kinds.ipynb", "--param", f"base={server.url}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    query = (
        "SELECT step, kind, json_extract(payload, '$.outputs[0].value') AS value FROM events JOIN steps USING (run_id, step) "
        "WHERE event = 'step_finished' AND steps.status = 'succeeded' AND steps.attempt = 1 ORDER BY step"
    )
    out = subprocess.run(
        [sys.executable, "-m", "flownb.cli", "sql", query, "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    rows = {r["step"]: (r["kind"], json.loads(r["value"])) for r in json.loads(out.stdout)}
    assert rows["fetch"][0] == "http" and rows["fetch"][1]["json"] == {"hello": "world"}
    assert rows["hello"] == ("shell", {"returncode": 0, "stdout": "got world\n", "stderr": ""})
    assert rows["words"] == ("wasm", {"words": 2})
    assert rows["inner"] == ("subflow", {"seed": 21})
