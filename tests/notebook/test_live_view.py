"""The live view in a real kernel: never stale, failures visible, a true final picture.

Kernels here have no ``dot`` on PATH, so pictures come from the in-process Graphviz,
whose one-off compile (about a second) happens while the first run goes on. Frame
timelines are read from the view (``LiveView.frames``); the bounds asserted are the
issue's targets (first frame within 0.3 s, two frames a second, the end at once,
``--wait`` within 0.2 s) with room for a loaded CI machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

FIRST_FRAME = 0.6  # target 0.3 s
STALE = 1.0  # target: a change drawn within 0.5 s (two frames a second)
FINAL = 0.5  # target: at once
WAIT_RETURN = 0.5  # target 0.2 s


def _sleep(seconds: float) -> str:
    # `_t` is cell-local: the cells share no name, so they run in parallel
    return f"_t = __import__('time')\n_t.sleep({seconds})"


WIDE = [
    f"%%step s0\n{_sleep(0.2)}\ns0 = 0",
    *(f"%%step p{i}\n{_sleep(round(0.1 * (i % 4 + 1), 1))}\np{i} = s0 + {i}" for i in range(1, 9)),
    "%%step total\ntotal = " + " + ".join(f"p{i}" for i in range(1, 9)),
]


@pytest.fixture
def kernel_env(kernel_env: dict[str, str]) -> dict[str, str]:
    """No ``dot`` binary: the in-process Graphviz draws, and compiles on the first picture."""
    dirs = [d for d in kernel_env.get("PATH", "").split(os.pathsep) if d and not os.path.exists(os.path.join(d, "dot"))]
    return {**kernel_env, "PATH": os.pathsep.join(dirs)}


def run_and_time(kernel: Any, magic: str = "v = %flow run") -> float:
    """Run ``magic`` in a cell that notes when it returned (time.monotonic() in the kernel)."""
    kernel.execute(f"import time as _time\n{magic}\n_returned = _time.monotonic()\n_returned_wall = _time.time()")
    return float(kernel.value("_returned"))


@pytest.fixture
def fresh_kernel(kernel_env: dict[str, str], tmp_path: Path) -> Any:
    """A kernel that has not loaded flownb yet (the fixture ``kernel`` has)."""
    from tests.notebook.conftest import Kernel

    k = Kernel(kernel_env, tmp_path)
    yield k
    k.kill()


def test_frames_on_a_fresh_kernel_without_dot(fresh_kernel: Any) -> None:
    kernel = fresh_kernel
    assert kernel.value("__import__('shutil').which('dot')") is None
    # one cell: load flownb, define the steps and start the run, while Graphviz compiles
    define = "".join(f"get_ipython().run_cell_magic('step', {c.split()[1]!r}, {c.split(chr(10), 1)[1]!r})\n"
                     for c in WIDE)  # fmt: skip
    kernel.execute(f"%load_ext flownb\n{define}import time as _time\nv = %flow run\n_returned = _time.monotonic()")
    returned = float(kernel.value("_returned"))
    kernel.wait_for("v.run.done and v.view.final_drawn.is_set()")
    frames = kernel.value("[list(f) for f in v.view.frames]")
    at, poked, wall, status, done, final = zip(*frames, strict=True)
    # the view had a frame before the magic returned: the output shows the run from its start
    assert at[0] <= returned
    assert any(returned < t <= returned + FIRST_FRAME for t in at), (returned, at[:5])
    # no change waited long to be drawn, although the layout took its one-off compile meanwhile
    assert max(a - p for a, p in zip(at, poked, strict=True)) <= STALE, frames
    assert list(at) == sorted(at) and len(frames) >= 4
    # the final frame is the final state, drawn as soon as the run's end was heard
    ended = kernel.value("v.view.state.run.ended_at")
    assert final[-1] and status[-1] == "succeeded" and done[-1] == 10
    assert sum(final) == 1 and 0 <= wall[-1] - ended <= FINAL, (wall[-1], ended)
    assert "10/10 steps done" in kernel.value("v.view.header.value")
    # the picture arrived once laid out (frames went on meanwhile), then patches of the steps that changed
    kernel.wait_for("v.view.picture_at is not None")
    assert kernel.value("v.view.picture_at") > at[0]
    picture = kernel.value("{'svg': len(v.view.picture.svg), 'patches': v.view.picture.patches, "
                           "'snapshot': v.view.picture.saved()}")  # fmt: skip
    assert picture["svg"] > 1000 and picture["patches"] >= 3
    assert picture["snapshot"]["running"] is False
    assert {s[0] for s in picture["snapshot"]["steps"].values()} == {"succeeded"}
    assert picture["snapshot"]["steps"]["p1"][1].startswith("succeeded · ")


def test_wait_returns_soon_after_the_end_and_leaves_a_static_final_picture(kernel) -> None:
    for cell in WIDE:
        kernel.execute(cell)
    out = kernel.execute("import time as _time\nr = %flow run --wait\n_returned_wall = _time.time()")
    ended = kernel.value("get_ipython().magics_manager.registry['FlowMagics'].session.tracker.states[r.id]"
                         ".run.ended_at")  # fmt: skip
    assert 0 <= kernel.value("_returned_wall") - ended <= WAIT_RETURN
    widget, static = out["data"]
    assert "application/vnd.jupyter.widget-view+json" in widget
    assert widget["text/plain"].startswith("<flownb live view of run") and "VBox" not in widget["text/plain"]
    html = static["text/html"]
    assert "flownb-static" in html and "<svg" in html and "succeeded" in html and "10/10 steps done" in html
    assert "running" not in html and "pending" not in html
    assert html.count("<tr>") == 11  # a header and a row a step
    assert "succeeded" in out["stdout"]  # the one line nbval and papermill logs keep


def test_a_failed_step_opens_its_panel_with_the_cells_traceback_and_figures_are_images(kernel) -> None:
    kernel.execute("%%step data\nprint('made data')\ndata = [1, 2, 3]")
    kernel.execute(
        "%%step plot\nimport matplotlib\nmatplotlib.use('agg')\nfrom matplotlib.figure import Figure\n"
        "fig = Figure(figsize=(5, 2.5))\nfig.add_subplot().plot(data)\nfrom IPython.display import display\n"
        "display(fig)\nplot = len(data)"
    )
    kernel.execute("%%step boom --on-failure continue\nn = len(data)\nx = n * 2\nraise ValueError(f'bad row {x}')")
    kernel.execute("v = %flow run")
    kernel.wait_for("v.run.done and v.view.final_drawn.is_set()")
    panels = kernel.value("{n: [o.get('output_type') for o in v.view.outputs_of(n)] for n in v.view._panels}")
    assert panels["data"] == ["stream"] and panels["boom"] == ["error"]
    assert kernel.value("sorted(v.view.outputs_of('plot')[0]['data'])") == ["image/png", "text/plain"]
    png = kernel.value("__import__('base64').b64decode(v.view.outputs_of('plot')[0]['data']['image/png'])[1:4].decode()")
    assert png == "PNG"  # base64 text of a PNG, as Jupyter sends images
    # the failure's panel opened by itself
    assert kernel.value("list(v.view._panels)[v.view.panels.selected_index]") == "boom"
    error = kernel.value("v.view.outputs_of('boom')[-1]")
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert error["ename"] == "ValueError" and error["evalue"] == "bad row 6"
    assert "Cell step boom, line 4" in text and "---> 4  raise ValueError(f'bad row {x}')" in text
    assert "3  x = n * 2" in text  # the lines around it, as Jupyter shows a cell's error
    assert "flownb" not in text.replace("Cell step", "")  # none of flownb's own frames
    # clicking a node (what the graph widget sends) opens that step's panel
    kernel.execute("v.view.picture._on_message(None, {'kind': 'select', 'step': 'data'}, None)")
    kernel.wait_for("list(v.view._panels)[v.view.panels.selected_index] == 'data'")


def test_watch_of_a_run_in_another_process_moves_twice_a_second(kernel, store_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\nimport flownb\nflow = flownb.Flow('other', db=sys.argv[1])\n"
        "for name, after in (('a', ()), ('b', ('a',)), ('c', ('b',)), ('d', ('c',))):\n"
        "    flow.step(lambda: time.sleep(0.6), name=name, after=after)\n"
        "run = flow.run()\nprint(run.id, flush=True)\nrun.wait()\n"
    )
    with subprocess.Popen([sys.executable, str(script), str(store_path)], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "FLOWNB_DB": str(store_path)}) as owner:  # fmt: skip
        run_id = owner.stdout.readline().strip() if owner.stdout else ""
        assert re.fullmatch(r"[0-9a-f]+", run_id), run_id
        kernel.execute(f"w = %flow watch {run_id}")
        kernel.wait_for("w.view.final_drawn.is_set()")
        assert owner.wait(60) == 0
    frames = kernel.value("[list(f) for f in w.view.frames]")
    at = [f[0] for f in frames]
    dones = [f[4] for f in frames]
    assert frames[-1][3] == "succeeded" and frames[-1][5] and dones[-1] == 4
    assert len(set(dones)) >= 3  # the steps were seen finishing one by one, not all at the end
    while_running = [t for t, f in zip(at, frames, strict=True) if not f[5]]
    gaps = [b - a for a, b in zip(while_running, while_running[1:], strict=False)]
    assert gaps and max(gaps) <= STALE, gaps


def test_view_shows_at_once_help_completion_and_rich_displays(kernel) -> None:
    kernel.execute("%%step first\nfirst = 1")
    kernel.execute("%step gate --kind approval --message 'ok?'")
    kernel.execute("%%step second --after gate\nsecond = first + 1")
    out = kernel.execute("view = %flow run --approve gate")
    assert [sorted(d) for d in out["data"]] == [["application/vnd.jupyter.widget-view+json", "text/plain"]]
    # displayed once in its own cell; shown again when asked in a later one
    assert "application/vnd.jupyter.widget-view+json" in kernel.execute("view")["data"][0]
    kernel.wait_for("view.run.done")
    # Run and Flow as HTML
    run_html = kernel.execute("view.run")["data"][0]["text/html"]
    assert "succeeded" in run_html and "<details>" in run_html and "<code>second</code>" in run_html
    flow_html = kernel.execute("get_ipython().magics_manager.registry['FlowMagics'].session.flow()")["data"][0]
    assert "3 steps in 2 levels" in flow_html["text/html"] and "<svg" in flow_html["text/html"]
    # %flow? shows the whole usage
    page = help_page(kernel, "%flow?")
    for text in ("usage: %flow run", "--in-order", "usage: %flow watch", "the live view:", "Ctrl/Cmd+wheel"):
        assert text in page, text
    assert "usage: %%flowsql [--param NAME] [--db PATH] [VAR <<] QUERY" in help_page(kernel, "%flowsql?")
    # tab completion: commands, options, step names, run ids
    assert {"run", "watch", "approve", "history"} <= set(complete(kernel, "%flow "))
    assert complete(kernel, "%flow wa") == ["watch"]
    assert {"--wait", "--in-order", "--param"} <= set(complete(kernel, "%flow run --"))
    assert complete(kernel, "%flow run --approve ") == ["all", "gate"]
    run_id = kernel.value("view.run.id")
    assert run_id in complete(kernel, "%flow watch ")
    assert complete(kernel, f"%flow approve {run_id} ") == ["gate"]
    assert set(complete(kernel, "%%step third --after ")) == {"first", "gate", "second"}


def test_flowsql_refuses_unknown_options_in_one_line_and_captures(kernel) -> None:
    res = kernel.execute("%flowsql --save q SELECT 1", allow_error=True)
    assert res["error"] and "unknown option --save" in res["error"] and "\n" not in res["error"].strip()
    out = kernel.execute("%flowsql answer << SELECT 42 AS x")
    assert out["data"] == []
    assert kernel.value("answer.x.tolist()") == [42]
    kernel.execute("%%flowsql both <<\nSELECT 1 AS a\nUNION ALL SELECT 2")
    assert kernel.value("both.a.tolist()") == [1, 2]
    assert kernel.value("get_ipython().run_line_magic('flowsql', '-- a comment\\nSELECT 7 AS y').y.tolist()") == [7]


FAKE_COLAB = (
    "import sys, types\ncalls = []\ngoogle = types.ModuleType('google')\n"
    "google.colab = types.ModuleType('google.colab')\ngoogle.colab.output = types.ModuleType('google.colab.output')\n"
    "google.colab.output.enable_custom_widget_manager = lambda: calls.append('enabled')\n"
    "sys.modules.update({'google': google, 'google.colab': google.colab, 'google.colab.output': google.colab.output})"
)


def test_colab_gets_its_custom_widget_manager(kernel_env: dict[str, str], tmp_path: Path) -> None:
    from tests.notebook.conftest import Kernel

    k = Kernel(kernel_env, tmp_path)  # not the fixture's: it loads flownb before Colab could be faked
    try:
        k.execute(FAKE_COLAB)
        out = k.execute("%load_ext flownb")
        assert k.value("calls") == ["enabled"] and out["stdout"] == ""
        # where Colab refuses, one line says what to do
        k.execute("%unload_ext flownb\ngoogle.colab.output.enable_custom_widget_manager = lambda: 1 / 0")
        out = k.execute("%load_ext flownb")
        assert out["stdout"].count("\n") == 1 and "enable_custom_widget_manager()" in out["stdout"]
    finally:
        k.kill()


def help_page(kernel: Any, code: str) -> str:
    """What ``code`` (``%flow?``) pages: the execute reply's payload, as the frontend shows it."""
    msg_id = kernel.kc.execute(code)
    reply = kernel.kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.kc.get_shell_msg(timeout=60)
    _drain(kernel, msg_id)
    pages = [p["data"]["text/plain"] for p in reply["content"].get("payload", []) if p.get("source") == "page"]
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(pages))


def complete(kernel: Any, code: str) -> list[str]:
    """The kernel's completions at the end of ``code`` (what Tab asks)."""
    msg_id = kernel.kc.complete(code, len(code))
    reply = kernel.kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.kc.get_shell_msg(timeout=60)
    return list(reply["content"]["matches"])


def _drain(kernel: Any, msg_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = kernel.kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" and \
                msg["content"]["execution_state"] == "idle":  # fmt: skip
            return
