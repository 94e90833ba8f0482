"""Rich displays in a notebook: ``Run`` and ``Flow`` as HTML, matplotlib figures as PNG.

Registered as IPython formatters by ``%load_ext flownb`` (the engine and the
model stay free of IPython). The HTML uses inline colours only (render/report.py),
so it reads the same in a live notebook, a saved one on GitHub, and nbconvert.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from flownb.errors import FlownbError
from flownb.render import SummaryFields, flow_html, layout_for, run_heading, summary_table

if TYPE_CHECKING:
    from flownb.engine.run import Run
    from flownb.notebook.session import Session


def run_html(run: Run, session: Session | None = None) -> str:
    """A run as HTML: its status, counts, duration and error, and its steps in a foldable table.

    The steps' durations and attempts come from the live view's state when this
    kernel follows the run; otherwise from the run's in-memory statuses.
    """
    statuses = dict(run.step_status)
    state = session.tracker.states.get(run.id) if session is not None else None
    rows: list[SummaryFields] = []
    duration = None
    if state is not None:
        state.fold()
        with state.lock:
            duration = state.duration_ms
            for name, v in state.steps.items():
                note = (v.error if v.status == "failed" else v.reason) or ""
                rows.append((name, None, statuses.get(name, v.status), v.attempts, v.duration_ms, note))
    else:
        rows = [(n, None, st, 0, None, "") for n, st in statuses.items()]
    counts: dict[str, int] = {}
    for _, _, status, *_ in rows:
        counts[status] = counts.get(status, 0) + 1
    done = sum(counts.get(s, 0) for s in ("succeeded", "cached", "skipped", "failed", "cancelled"))
    error = str(run.error) if run.error is not None else None
    heading = run_heading(run.flow, run.id, str(run.status), done=done, total=len(rows), counts=counts,
                          duration_ms=duration, error=error, live=False)  # fmt: skip
    table = summary_table(rows, live=False) if rows else ""
    fold = f"<details><summary>steps</summary>{table}</details>" if table else ""
    return f"<div class='flownb-run'>{heading}{fold}</div>"


def flow_to_html(flow: Any, session: Session | None = None) -> str:
    """A flow as HTML: its size, its picture and its steps (a notebook's flow has its cells synced first)."""
    name = str(getattr(flow, "name", "flow"))
    where = str(flow.db) if getattr(flow, "db", None) else None
    try:
        ours = session is not None and session.flows.get(name) is flow
        graph = session.graph(name) if ours and session is not None else flow.graph()
    except FlownbError as exc:
        return flow_html(name, steps=[], svg=None, where=where, error=str(exc))
    steps = [(n, s.kind, graph.levels.get(n), sorted(graph.deps.get(n, ()))) for n, s in graph.specs.items()]
    try:
        svg = layout_for(graph).fill() if graph.specs else None
    except FlownbError:
        svg = None  # the table still says what the flow is
    return flow_html(name, steps=steps, svg=svg, where=where)


def figure_png(figure: Any) -> str | None:
    """A matplotlib figure as base64 PNG (what the inline backend shows), None for an empty one."""
    from IPython.core.pylabtools import print_figure

    data = print_figure(figure, "png", bbox_inches="tight", base64=True)  # type: ignore[no-untyped-call]
    return data if isinstance(data, str) else None


def register(shell: Any, session: Session) -> None:
    """Add the formatters to ``shell`` (text/html for Run and Flow, image/png for figures)."""
    import flownb

    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters:
        return
    html_fmt = formatters.get("text/html")
    if html_fmt is not None:
        html_fmt.for_type(flownb.Run, lambda run: run_html(run, session))
        html_fmt.for_type(flownb.Flow, lambda flow: flow_to_html(flow, session))
    png = formatters.get("image/png")
    if png is not None and not _has_figure_printer(png):
        # without `%matplotlib inline` a Figure shows as "<Figure size 500x250 with 1 Axes>";
        # the inline backend, once active, replaces this with its own (its formats, its dpi)
        png.for_type_by_name("matplotlib.figure", "Figure", figure_png)


def _has_figure_printer(formatter: Any) -> bool:
    if ("matplotlib.figure", "Figure") in formatter.deferred_printers:
        return True
    module = sys.modules.get("matplotlib.figure")
    return module is not None and module.Figure in formatter.type_printers

