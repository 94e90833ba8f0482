"""A notebook run headless keeps the true final state: a static picture and summary, no stale frame."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.notebook.saved_notebooks import run_headless, to_html

pytestmark = pytest.mark.slow

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_saved_notebook_shows_the_final_state_as_static_html(tmp_path: Path) -> None:
    path = run_headless(tmp_path, tmp_path / "store.duckdb")
    nb = nbformat.read(path, as_version=4)
    run_wait, run_view, wait_cell = nb.cells[5], nb.cells[6], nb.cells[7]
    for cell in (run_wait, run_view, wait_cell):
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    # the live view's own output: a widget, and a text that is no widget dump and no stale progress
    widget = next(o for o in run_wait.outputs if WIDGET in o.get("data", {}))
    assert widget.data["text/plain"].startswith("<flownb live view of run ") and "VBox" not in widget.data["text/plain"]
    # the final state as static HTML: --wait adds it in its own cell, view.wait() in the cell that waits
    for cell in (run_wait, wait_cell):
        static = [o.data["text/html"] for o in cell.outputs if "flownb-static" in o.get("data", {}).get("text/html", "")]
        assert len(static) == 1, cell.outputs
        html = static[0]
        assert "4/4 steps done" in html and "<svg" in html and html.count("<tr>") == 5
        assert re.search(r">succeeded</span> in \d", html)
        assert "running" not in html and "pending" not in html
    assert not any("flownb-static" in o.get("data", {}).get("text/html", "") for o in run_view.outputs)
    # nbconvert's HTML (what nbviewer serves) carries it, outside any widget script
    page = to_html(path).read_text()
    blocks = re.findall(r"<div class=[\"']flownb-static[\"']>.*?</table></div>", page, re.S)  # re-serialized
    assert len(blocks) == 2 and all("<svg" in b and "4/4 steps done" in b for b in blocks)
