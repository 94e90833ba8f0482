"""What a user does with notebooks/approvals.ipynb in JupyterLab, in headless Chromium.

Start JupyterLab, open a copy of the notebook, Run > Run All Cells, wait for the live
graph, click Approve (or type a comment and click Reject) on the approval card, see the
card decided and the run end in the view, then read the decision back from the store
the kernel wrote (``FLOWNB_DB``), once the server and its kernel are shut down.

Screenshots before and after the click go to ``tests/browser/artifacts/<test>/`` (and
``failure.png`` with the server's log when a step fails).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

import flownb
from flownb.store.base import forget_store, open_store
from tests.browser.lab import JupyterLab, LabNotebook, chromium_page

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "approvals.ipynb"
TIMEOUT_MS = 90_000  # generous for a loaded 2-core CI machine; each wait ends as soon as its condition holds

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def copy_cleared(src: Path, dest_dir: Path) -> Path:
    """The notebook without outputs: a notebook read from disk is untrusted, so run it live."""
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    nbformat.write(nb, dest)
    return dest


def read_store(db: Path, run_id: str) -> tuple[list[tuple[Any, ...]], str]:
    """The run's approvals and status; only once no kernel holds the DuckDB file's lock."""
    store = open_store(str(db))
    try:
        approvals = flownb.sql(
            "SELECT step, decision, via, comment FROM approvals WHERE run_id = ? ORDER BY step", store, [run_id]
        )
        runs = flownb.sql("SELECT status FROM runs WHERE run_id = ?", store, [run_id])
    finally:
        forget_store(store)
    approvals = approvals.astype(object).where(approvals.notna(), None)  # a NULL comment is None, not NaN
    return [tuple(r) for r in approvals.itertuples(index=False)], str(runs["status"].iloc[0])


class LiveView:
    """The run's live view in the page: header, graph, and the approval card of ``step``."""

    def __init__(self, page: Any, step: str) -> None:
        self.output = page.locator(".jp-OutputArea-output", has=page.locator(".flownb-graph svg"))
        self.svg = self.output.locator(".flownb-graph svg").first
        self.header = self.output.locator(".widget-html-content", has_text=re.compile(r"run [0-9a-f]+: "))
        # the card is the innermost box holding the title (the view's boxes hold it too)
        self.card = self.output.locator(".widget-vbox", has_text=f"Approval {step}").last
        self.decided = self.card.locator(".widget-html-content", has_text=re.compile(r"\b(approved|rejected) by "))
        self.waiting = self.card.get_by_text("waiting for a decision")

    def run_id(self) -> str:
        found = re.search(r"run ([0-9a-f]+): ", self.header.first.inner_text())
        assert found, self.header.first.inner_text()
        return found.group(1)

    def button(self, name: str) -> Any:
        return self.card.get_by_role("button", name=name)

    def scroll_to_top(self) -> None:
        self.output.evaluate("el => el.scrollIntoView({block: 'start'})")


@pytest.mark.parametrize(
    ("button", "decision", "comment", "run_status"),
    [
        ("Approve", "approved", None, "succeeded"),
        ("Reject", "rejected", "not this week", "failed"),
    ],
    ids=["approve", "reject"],
)
def test_decide_in_jupyterlab(
    chromium: Path, artifacts: Path, tmp_path: Path,
    button: str, decision: str, comment: str | None, run_status: str,
) -> None:  # fmt: skip
    nb_path = copy_cleared(NOTEBOOK, tmp_path / "notebooks")
    db = tmp_path / "store.duckdb"
    lab = JupyterLab(nb_path.parent, tmp_path, env={"FLOWNB_DB": str(db)})
    with lab, chromium_page(chromium, tmp_path) as page:
        page.set_default_timeout(TIMEOUT_MS)
        notebook = LabNotebook(page, lab, nb_path.name)
        view = LiveView(page, "sign_off")
        try:
            notebook.open()
            notebook.run_all()

            view.svg.wait_for()
            view.waiting.or_(view.decided).first.wait_for()
            if view.decided.count():
                pytest.fail(
                    f"the gate was decided before anyone clicked ({view.decided.first.inner_text()!r}): "
                    f"the notebook's headless self-approval cell must not fire in JupyterLab ({NOTEBOOK})",
                    pytrace=False,
                )
            run_id = view.run_id()
            if comment is not None:
                view.card.get_by_placeholder("comment (optional)").fill(comment)
            view.button(button).scroll_into_view_if_needed()
            view.scroll_to_top()
            before = notebook.screenshot(artifacts / f"1-before-{button.lower()}.png")

            view.button(button).click()

            # the click only posts the decision: the card changes when the engine has it
            view.card.locator(
                ".widget-html-content", has_text=re.compile(rf"\b{decision} by \S+ at .* via widget")
            ).wait_for()
            view.header.filter(has_text=re.compile(rf"run {run_id}: {run_status}\b")).wait_for()
            assert view.button("Approve").is_disabled()
            assert view.button("Reject").is_disabled()
            if comment is not None:
                view.decided.filter(has_text=comment).wait_for()
            view.scroll_to_top()
            after = notebook.screenshot(artifacts / f"2-after-{button.lower()}.png")
            print(f"screenshots: {before} {after}")
        except BaseException:
            try:
                print(f"failure screenshot: {notebook.screenshot(artifacts / 'failure.png')}")
            finally:
                print(f"--- JupyterLab log ---\n{lab.log_tail()}")
            raise
    # the server shut its kernel down on the way out: the store's lock is free
    approvals, status = read_store(db, run_id)
    assert approvals == [("sign_off", decision, "widget", comment)]
    assert status == run_status
