"""A notebook run headless (nbclient, as papermill does) and saved: what its outputs keep.

Used by test_saved_notebook.py (outputs and nbconvert's HTML) and by the browser test
(the HTML as a browser renders it).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CELLS = [
    "%load_ext flownb",
    "%%step load\nprint('loading')\nrows = [3, 1, 2]",
    "%%step clean\nclean = sorted(rows)",
    "%%step stats\nstats = {'n': len(clean), 'max': max(clean)}",
    "%%step report\nreport = f\"{stats['n']} rows, max {stats['max']}\"",
    "%flow run --wait",
    "view = %flow run",
    "view.wait()",
]


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def run_headless(workdir: Path, store: Path) -> Path:
    """Execute the notebook with nbclient (widget state stored, as by default) and save it."""
    nb = notebook()
    env = {**os.environ, "FLOWNB_DB": str(store)}
    env.pop("JPY_SESSION_NAME", None)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    asyncio.run(client.async_execute(env=env))  # a loop of our own, closed after
    path = workdir / "saved.ipynb"
    nbformat.write(nb, path)
    return path


def to_html(path: Path) -> Path:
    """nbconvert's HTML (lab template), as nbviewer and CI artifacts show a notebook."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(path, as_version=4))
    out = path.with_suffix(".html")
    out.write_text(body)
    return out
