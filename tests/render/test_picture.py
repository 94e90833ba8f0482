"""The picture: DOT from a graph, one layout per shape, frames by filling it in."""

from __future__ import annotations

import re

import flownb
from flownb.render import STATUS_COLORS, dot_source, flow_picture, flow_svg, layout_for


def small() -> flownb.Flow:
    flow = flownb.Flow("pic", db=":memory:")

    @flow.step
    def a() -> int:
        return 1

    @flow.step
    def b(a: int) -> int:
        return a

    flow.approval("gate", message="ok {{ b }}?")
    return flow


def test_dot_has_a_node_per_step_and_an_edge_per_dependency() -> None:
    dot = dot_source(small().graph(), {"a": "succeeded"})
    assert "a -> b" in dot and "b -> gate" in dot
    assert STATUS_COLORS["succeeded"] in dot and "gate (approval)" in dot


def test_frames_recolor_the_cached_layout() -> None:
    graph = small().graph()
    svg = flow_svg(graph, {"a": "succeeded", "b": "running"}, durations={"a": 1500}, attempts={"a": 2})
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "succeeded · 1.5s · attempt 2" in texts and "running" in texts and "pending" in texts
    fills = re.findall(r'fill="(#[0-9a-f]{6})"', svg)
    assert STATUS_COLORS["succeeded"] in fills and STATUS_COLORS["running"] in fills
    assert layout_for(graph) is layout_for(small().graph())  # same shape: laid out once
    assert svg.lstrip().startswith("<svg")


def test_flow_picture_displays_as_svg() -> None:
    picture = small().show()
    bundle = picture._repr_mimebundle_()
    assert bundle["image/svg+xml"].startswith("<svg") and "3 steps" in bundle["text/plain"]
    assert flow_picture(small().graph())._repr_svg_() == picture.svg
