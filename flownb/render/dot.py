"""DOT for a flow: a node per step, an edge per dependency."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import graphviz

if TYPE_CHECKING:
    from flownb.model.flow import Graph

#: fill color per step status (light, so the black text stays readable)
STATUS_COLORS: dict[str, str] = {
    "pending": "#f3f4f6",
    "running": "#bfdbfe",
    "retrying": "#fde68a",
    "waiting": "#fdba74",
    "succeeded": "#bbf7d0",
    "cached": "#d9f99d",
    "failed": "#fca5a5",
    "skipped": "#e5e7eb",
    "cancelled": "#d1d5db",
}
NODE_ID_PREFIX = "flownb_step_"  # graphviz escapes "-" in ids; "_" stays readable


def dot_source(
    graph: Graph,
    statuses: Mapping[str, str] | None = None,
    *,
    details: Mapping[str, str] | None = None,
    fill: Mapping[str, str] | None = None,
) -> str:
    """The DOT text of ``graph``.

    ``details`` is each node's second label line (default: its status);
    ``fill`` overrides the status colors (the layout cache passes
    a placeholder color it later replaces).
    """
    statuses = statuses or {}
    dot = graphviz.Digraph(graph.flow)
    dot.attr(rankdir="TB", nodesep="0.25", ranksep="0.35", bgcolor="transparent")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10",
             margin="0.12,0.04", height="0.3")  # fmt: skip
    dot.attr("edge", color="#6b7280", arrowsize="0.6")
    for name, spec in graph.specs.items():
        status = statuses.get(name, "pending")
        second = (details or {}).get(name) or status
        color = (fill or {}).get(name) or STATUS_COLORS.get(status, STATUS_COLORS["pending"])
        kind = "" if spec.kind == "python" else f" ({spec.kind})"
        dot.node(name, label=f"{name}{kind}\n{second}", id=NODE_ID_PREFIX + name, fillcolor=color)
    for name, deps in graph.deps.items():
        for dep in sorted(deps):
            dot.edge(dep, name)
    for name, spec in graph.specs.items():
        if isinstance(spec.fallback, str):
            dot.edge(name, spec.fallback, style="dashed", label="fallback", fontsize="8")
    return str(dot.source)
