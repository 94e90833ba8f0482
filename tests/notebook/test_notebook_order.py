"""Notebook order in a real kernel: the saved notebook's order, matched by cell id (DESIGN §3a)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

FIRST = "%%step first\nx = 1"
SECOND = "%%step second\ny = x + 1"
THIRD = "%%step third\nx = 100"


def saved(tmp_path: Path) -> Path:
    nb = new_notebook(cells=[new_code_cell("%load_ext flownb"), new_code_cell(FIRST), new_code_cell(SECOND),
                             new_code_cell(THIRD)])  # fmt: skip
    for cell, cell_id in zip(nb.cells, ["setup", "c-first", "c-second", "c-third"], strict=True):
        cell["id"] = cell_id
    path = tmp_path / "ordered.ipynb"
    nbformat.write(nb, path)
    return path


def test_cells_defined_out_of_order_follow_the_saved_notebook(
    tmp_path: Path, kernel_env: dict[str, str], start_kernel: Any
) -> None:
    kernel_env["JPY_SESSION_NAME"] = str(saved(tmp_path))
    k = start_kernel()
    # the user runs the cells bottom up: the saved notebook still says which comes first
    k.execute(THIRD, cell_id="c-third")
    k.execute(SECOND, cell_id="c-second")
    k.execute(FIRST, cell_id="c-first")
    k.execute("run = %flow run --wait")
    assert k.value("[run.status, y, x]") == ["succeeded", 2, 100]
    # errors name cells by their number in the notebook
    k.execute("%%step second\ny = z + 1", cell_id="c-second")
    res = k.execute("%flow run --wait", allow_error=True)
    assert "name 'z' is not defined: cell [3] (step second) reads it, and no earlier cell defines it" in res["error"]


def test_without_a_saved_notebook_cells_keep_the_order_they_were_first_defined(start_kernel: Any) -> None:
    k = start_kernel()
    k.execute(FIRST, cell_id="a")
    k.execute(SECOND, cell_id="b")
    k.execute("%%step first\nx = 5", cell_id="a")  # redefined: keeps its place above second
    k.execute("run = %flow run --wait")
    assert k.value("[run.status, y]") == ["succeeded", 6]
