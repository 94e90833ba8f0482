"""The live view, widget approvals, watch, and a kernel that stays responsive."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GATED = [
    "%%step data\nprint('made data')\nimport pandas as pd\nfrom IPython.display import display\n"
    "data = pd.DataFrame({'x': [1, 2, 3]})\ndisplay(data)",
    "%step gate --kind approval --message 'Publish {{ data | length }} rows?'",
    "%%step publish --after gate\npublished = len(data)",
]


def test_approve_button_click_continues_the_run(kernel) -> None:
    for cell in GATED:
        kernel.execute(cell)
    kernel.execute("v = %flow run")
    kernel.wait_for("v.run.pending_approvals == ['gate'] and bool(v.view._cards.get('gate'))")
    card = kernel.value(
        "{'approve': v.view._cards['gate'].approve.model_id, 'comment': v.view._cards['gate'].comment.model_id}"
    )
    # what a browser sends: the comment box's new value, then the click
    kernel.set_state(card["comment"], {"value": "looks right"})
    kernel.click(card["approve"])
    kernel.wait_for("v.run.done")
    assert kernel.value("[v.run.status, published]") == ["succeeded", 3]
    kernel.wait_for("v.view.painter.settle() and v.view._cards['gate'].approve.disabled")
    status = kernel.value("v.view._cards['gate'].status.value")
    assert "approved" in status and "via widget" in status and "looks right" in status
    row = kernel.value(
        "__import__('flownb').sql('SELECT decision, comment, via FROM approvals').values.tolist()"
    )
    assert row == [["approved", "looks right", "widget"]]
    # the step's print and display() landed in its panel, in no cell's output
    assert not any("made data" in s for s in kernel.streams)
    panel = kernel.value("[o.get('text') or sorted(o.get('data', {})) for o in v.view.outputs_of('data')]")
    assert panel[0] == "made data\n" and "text/html" in panel[1]
    header = kernel.value("v.view.header.value")
    assert "succeeded" in header and "3/3 steps done" in header
    assert "<table" in kernel.value("v.view.summary.value")


def test_kernel_answers_during_a_run_and_magic_approve_rejects(kernel, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    kernel.execute(
        f"%%step slow\nimport time, pathlib\nwhile not pathlib.Path({str(flag)!r}).exists():\n"
        "    time.sleep(0.05)\nslow = 1"
    )
    kernel.execute("%step gate --kind approval")
    kernel.execute("v = %flow run")
    kernel.wait_for("v.run.step_status['slow'] == 'running'")
    assert kernel.execute("1+1")["data"][0]["text/plain"] == "2"
    assert kernel.value("v.run.step_status['slow']") == "running"
    flag.write_text("go")
    kernel.wait_for("v.run.pending_approvals == ['gate']")
    out = kernel.execute("%flow approve $v.run.id gate --reject --comment 'not today'")
    assert "rejected" in out["stdout"]
    kernel.wait_for("v.run.done")
    assert kernel.value("v.run.status") == "failed"
    # watch rebuilds the view of the finished run from the events table alone
    kernel.execute("w = %flow watch $v.run.id")
    kernel.wait_for("w.view.painter.settle() and 'failed' in w.view.header.value")
    card = kernel.value("w.view._cards['gate'].status.value")
    assert "rejected" in card and "via magic" in card and "not today" in card
    assert kernel.value("w.view._cards['gate'].reject.disabled") is True


def test_wait_tells_how_to_decide_instead_of_hanging(kernel, store_path: Path) -> None:
    kernel.execute("%step gate --kind approval")
    kernel.execute("%%step after --after gate\nafter = 1")
    # --approve decides at once (headless notebooks); without it --wait would say how to decide
    out = kernel.execute("%flow run --wait --approve gate")
    assert "succeeded" in out["stdout"]
    # without it, --wait says how to decide; here another process (as the CLI would) decides
    decided: list[str] = []

    def decide_elsewhere(text: str) -> None:
        m = re.search(r"flownb approve (\w+) gate", text)
        if m and not decided:
            from flownb.store.base import Decision, forget_store, open_store, utcnow

            store = open_store(store_path)
            store.post_decision(Decision(m.group(1), "gate", "approved", "ci", "from the test", "cli", utcnow()))
            forget_store(store)
            decided.append(m.group(1))

    out = kernel.execute("%flow run --wait", on_stream=decide_elsewhere)
    assert "waits for approval of 'gate'" in out["stderr"] and decided
    assert "succeeded" in out["stdout"]
    via = kernel.value("__import__('flownb').sql('SELECT via FROM approvals ORDER BY requested_at').via.tolist()")
    assert via == ["auto", "cli"]
