"""The live view's parts without a kernel: the painter's timing, the graph widget's messages, tracebacks."""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from typing import Any

import pytest

from flownb.notebook.cellfn import register_source
from flownb.notebook.graph_widget import REBASE_STEPS, GraphWidget
from flownb.notebook.painter import Painter
from flownb.notebook.tracebacks import error_output, jupyter_traceback


class Recorder:
    """A paintable that notes when it was drawn, and can take its time or fail."""

    def __init__(self, cost: float = 0.0, fail: bool = False) -> None:
        self.next_paint = 0.0
        self.cost = cost
        self.fail = fail
        self.drawn: list[float] = []
        self.event = threading.Event()

    def paint(self) -> None:
        self.drawn.append(time.monotonic())
        time.sleep(self.cost)
        self.event.set()
        if self.fail:
            raise RuntimeError("broken view")


def test_many_pokes_make_one_redraw_and_a_slow_redraw_waits_at_most_max_interval() -> None:
    painter = Painter(min_interval=0.05, max_interval=0.3)
    view = Recorder(cost=0.1)  # 10 x cost = 1 s, capped at 0.3 s
    for _ in range(50):
        painter.poke(view)
    assert painter.settle(5)
    assert len(view.drawn) == 1
    painter.poke(view)
    assert painter.settle(5)
    gap = view.drawn[1] - view.drawn[0]
    assert 0.3 <= gap <= 0.3 + 0.1 + 0.3  # the cap, the redraw itself, a loaded machine


def test_an_urgent_poke_is_drawn_at_once_whatever_the_slot() -> None:
    painter = Painter(min_interval=5.0, max_interval=5.0)  # the next slot is far away
    view = Recorder()
    painter.poke(view)
    assert painter.settle(5)
    painter.poke(view)  # due in 5 s
    time.sleep(0.05)
    assert len(view.drawn) == 1
    asked = time.monotonic()
    painter.poke(view, urgent=True)
    assert painter.settle(2) and len(view.drawn) == 2
    assert view.drawn[1] - asked < 0.5


def test_a_broken_view_is_logged_to_the_flownb_logger_and_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    painter = Painter(min_interval=0.01)
    broken, fine = Recorder(fail=True), Recorder()
    with caplog.at_level(logging.ERROR, logger="flownb"):
        painter.poke(broken)
        painter.poke(fine)
        assert painter.settle(5)
    assert fine.drawn and broken.drawn
    assert any(r.name == "flownb" and "could not be redrawn" in r.getMessage() and r.exc_info for r in caplog.records)


def sent(widget: GraphWidget) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    widget.send = lambda content, buffers=None: out.append(content)  # type: ignore[method-assign]
    return out


def node(status: str) -> tuple[str, str, str]:
    return (status, status, f"tip {status}")


def test_graph_patches_carry_only_what_changed_once_the_browser_said_hello() -> None:
    w = GraphWidget()
    msgs = sent(w)
    steps = {f"s{i}": node("pending") for i in range(1000)}
    w.update(steps, 0, running=True)
    w._on_message(None, {"kind": "hello"}, None)
    assert msgs[-1]["kind"] == "full" and len(msgs[-1]["steps"]) == 1000
    steps["s7"] = node("running")
    steps["s8"] = node("succeeded")
    w.update(steps, 120, running=True)
    patch = msgs[-1]
    assert patch["kind"] == "patch" and set(patch["steps"]) == {"s7", "s8"}
    assert len(json.dumps(patch)) < 300  # a status update is tens of bytes a step
    before = len(msgs)
    w.update(steps, 240, running=True)  # nothing changed: nothing sent (the browser ticks the clock)
    assert len(msgs) == before
    assert [m["seq"] for m in msgs] == sorted({m["seq"] for m in msgs})


def test_before_hello_patches_repeat_every_change_and_a_long_silence_becomes_a_snapshot() -> None:
    w = GraphWidget()
    msgs = sent(w)
    steps = {f"s{i}": node("pending") for i in range(REBASE_STEPS + 50)}
    w.update({"s0": node("running")}, 0, running=True)
    w.update({"s1": node("running")}, 0, running=True)
    assert set(msgs[-1]["steps"]) == {"s0", "s1"}  # a model that missed the first still catches up
    steps.update({n: node("succeeded") for n in steps})
    w.update(steps, 10, running=True)
    assert w.saved()["seq"] == w._seq and len(w.saved()["steps"]) == len(steps)
    w.finish(steps, 20)
    assert w.saved()["running"] is False and w.saved()["elapsed_ms"] == 20


def test_a_click_on_a_node_asks_for_its_panel() -> None:
    asked: list[str] = []
    w = GraphWidget(on_select=asked.append)
    w._on_message(None, {"kind": "select", "step": "load"}, None)
    w._on_message(None, {"kind": "select", "step": 3}, None)  # junk from a page is ignored
    assert asked == ["load"]


def failing_cell() -> str:
    filename = register_source("boom", "%%step boom\nx = 1\ny = x + 1\nraise KeyError(y)\nz = 3\n")
    code = compile("\nx = 1\ny = x + 1\nraise KeyError(y)\nz = 3\n", filename, "exec")
    try:
        try:
            exec(code, {})  # noqa: S102  (a cell of our own)
        except KeyError as exc:
            raise RuntimeError("step 'boom' failed") from exc
    except RuntimeError as exc:
        text = "".join(traceback.format_exception(exc))
    # what the engine's own frames look like in a recorded traceback, paths scrubbed or not
    return text.replace(
        "Traceback (most recent call last):\n",
        "Traceback (most recent call last):\n"
        '  File "[redacted]/flownb/executors/local.py", line 116, in _work\n    result = context.run(fn, **kwargs)\n',
        1,
    )


def test_tracebacks_show_the_cells_lines_not_flownbs_frames() -> None:
    lines = jupyter_traceback(failing_cell())
    plain = "\n".join(lines)
    for code in ("\x1b[31m", "\x1b[32m"):
        assert code in plain  # coloured as IPython colours errors
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", plain)
    assert "flownb/executors" not in text and "context.run" not in text
    assert "Cell step boom, line 4" in text and "---> 4  raise KeyError(y)" in text and "3  y = x + 1" in text
    assert "The above exception was the direct cause" in text and text.rstrip().endswith("RuntimeError: step 'boom' failed")


def test_an_error_without_a_recorded_traceback_is_still_one_error_output() -> None:
    out = error_output(None, "StepTimeout", "step 'slow' timed out after 1s")
    assert out["output_type"] == "error" and out["ename"] == "StepTimeout"
    assert "timed out" in "".join(out["traceback"])  # type: ignore[arg-type]


# -- frames redo only the steps that changed -------------------------------------------------------


def _view_of_three_steps() -> tuple[Any, Any]:
    import flownb
    from flownb.notebook.painter import Painter
    from flownb.notebook.state import RunState
    from flownb.notebook.view import LiveView

    flow = flownb.Flow("frames", db=":memory:")
    for name in ("a", "b", "c"):
        flow.step(lambda: None, name=name)
    state = RunState("r1", "frames", ["a", "b", "c"])
    view = LiveView(state, flow.plan().graph, lambda *a: None, painter=Painter())
    return state, view


def _event(seq: int, name: str, step: str | None = None, **payload: Any) -> Any:
    from flownb.store.base import Event

    return Event("r1", seq, name, step, payload, at=1_700_000_000.0 + seq)


def _started(seq: int, step: str) -> Any:
    return _event(seq, "step_started", step, attempt=1, kind="python", status="running")


def _copies(state: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The steps each frame copies from ``state``, in order."""
    from flownb.notebook import view as view_module

    copied: list[str] = []
    real = view_module._Snap.of
    names = {id(v): n for n, v in state.steps.items()}

    def counted(v: Any) -> Any:
        copied.append(names[id(v)])
        return real(v)

    monkeypatch.setattr(view_module._Snap, "of", staticmethod(counted))
    return copied


def test_a_frame_copies_only_the_steps_changed_since_the_last_and_the_final_frame_is_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, view = _view_of_three_steps()
    copied = _copies(state, monkeypatch)
    state.apply(_event(1, "run_started", flow="frames", status="running"))
    state.apply(_started(2, "a"))
    state.apply(_event(3, "step_finished", "a", attempt=1, kind="python", status="succeeded", duration_ms=3.0))
    view.paint()
    assert copied == ["a"]  # b and c did not change: their copies from the first frame serve
    assert view.picture._state()["steps"]["a"][0] == "succeeded"

    copied.clear()
    state.apply(_event(4, "run_ended", status="failed", error="boom", duration_ms=9.0))
    view.paint()
    assert copied == []
    final = view.picture.saved()["steps"]
    # the run ended: steps that never started show as not run, from their kept copies too
    assert [final[n][0] for n in "abc"] == ["succeeded", "cancelled", "cancelled"]
    assert view.final_drawn.is_set()


def test_when_the_list_of_changes_starts_again_the_next_frame_copies_every_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flownb.notebook import state as state_module

    monkeypatch.setattr(state_module, "MAX_TOUCHED", 2)
    state, view = _view_of_three_steps()
    copied = _copies(state, monkeypatch)
    state.apply(_event(1, "run_started", flow="frames", status="running"))
    for seq, step in enumerate("abc", start=2):
        state.apply(_started(seq, step))
    assert state.touched_epoch == 1 and state.touched == ["c"]
    view.paint()
    assert sorted(copied) == ["a", "b", "c"]  # the changes before the restart are gone: redo all
    assert {n: v[0] for n, v in view.picture._state()["steps"].items()} == dict.fromkeys("abc", "running")


def test_the_headers_counts_follow_the_steps_that_moved_and_match_a_full_count() -> None:
    state, view = _view_of_three_steps()
    state.apply(_event(1, "run_started", flow="frames", status="running"))
    state.apply(_started(2, "a"))
    state.apply(_started(3, "b"))
    view.paint()
    assert (view._done, view._counts) == (0, {"running": 2, "pending": 1})
    assert view.progress.value == 0 and "running 2" in view.header.value
    state.apply(_event(4, "step_finished", "a", attempt=1, kind="python", status="succeeded", duration_ms=3.0))
    state.apply(_event(5, "step_finished", "b", attempt=1, kind="python", status="failed", error="boom"))
    view.paint()
    assert (view._done, view._counts) == (2, {"succeeded": 1, "failed": 1, "pending": 1})
    assert "(failed 1, pending 1, succeeded 1)" in view.header.value  # no "running 0"
    assert view.progress.value == 2
    state.apply(_event(6, "run_ended", status="failed", error="boom", duration_ms=9.0))
    view.paint()
    assert view._counts == {"succeeded": 1, "failed": 1, "cancelled": 1}  # c never ran
