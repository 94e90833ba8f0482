"""The HTML of runs and flows, labels in words, and layouts that never block a frame."""

from __future__ import annotations

import re
import threading

import flownb
from flownb.render import (
    StepDetail,
    cached_layout,
    detail_text,
    flow_html,
    layout_async,
    run_heading,
    static_report,
    summary_table,
)


def test_labels_say_status_time_attempts_and_items_in_words() -> None:
    assert detail_text(StepDetail("pending")) == "pending"
    assert detail_text(StepDetail("succeeded", 1500, 1)) == "succeeded · 1.5s"
    assert detail_text(StepDetail("retrying", None, 2)) == "retrying · attempt 2"
    assert detail_text(StepDetail("running", None, 1, 3, 10)) == "running · 3/10 items"


def test_layout_async_answers_at_once_and_calls_back_once_laid_out() -> None:
    flow = flownb.Flow("async_layout_shape", db=":memory:")

    @flow.step
    def only_here() -> int:  # a shape no other test lays out
        return 1

    graph = flow.graph()
    assert cached_layout(graph) is None
    ready = threading.Event()
    calls: list[int] = []

    def on_ready() -> None:
        calls.append(1)
        ready.set()

    first = layout_async(graph, on_ready)
    assert first is None or first is cached_layout(graph)  # never a layout made on this thread
    if first is None:
        assert ready.wait(60)
        assert calls == [1]
    layout = layout_async(graph, lambda: None)
    assert layout is not None and layout is cached_layout(graph)
    assert "only_here" in layout.fill()


def test_static_report_is_self_contained_and_escaped() -> None:
    rows = [("<b>x</b>", 0, "failed", 3, 1200.0, "ValueError: <bad>"), ("y", 1, "cancelled", 0, None, "")]
    heading = run_heading("f<1>", "abc", "failed", done=2, total=2, counts={"failed": 1, "cancelled": 1},
                          duration_ms=1200, error="step x <failed>", live=False)  # fmt: skip
    html = static_report(heading, "<svg width='10pt' height='10pt'></svg>", rows)
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "&lt;bad&gt;" in html
    assert "class='flownb-pill" not in html  # no stylesheet where it is read: colours inline
    assert re.search(r"background:#fca5a5;color:#7f1d1d[^>]*>failed<", html)
    assert "padding:3px 10px" in html  # the table has cell padding
    assert "<svg style='max-width:100%;height:auto'" in html
    assert "flownb-static" in html and "in 1.2s" in html and "2/2 steps done" in html
    live = summary_table(rows, live=True)
    assert "class='flownb-summary'" in live and "flownb-pill flownb-st-failed" in live


def test_flow_html_lists_steps_or_says_what_is_wrong() -> None:
    html = flow_html("etl", steps=[("a", "python", 0, []), ("b", "shell", 1, ["a"])], svg="<svg></svg>")
    assert "Flow &#x27;etl&#x27;" in html and "2 steps in 2 levels" in html and "<td style" in html
    broken = flow_html("etl", steps=[], svg=None, error="a cycle: a -> b -> a")
    assert "a cycle: a -&gt; b -&gt; a" in broken
