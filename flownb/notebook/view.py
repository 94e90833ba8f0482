"""The live view of a run: picture, progress, step panels, approval cards, summary.

Only the painter thread changes these widgets, from a snapshot of the run's
:class:`RunState`; the engine folds events and pokes, clicks post decisions.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from flownb.notebook.cards import CardWidget, Decide
from flownb.notebook.painter import PAINTER, Painter
from flownb.render.picture import StepDetail, format_duration, layout_for

if TYPE_CHECKING:
    from flownb.model.flow import Graph
    from flownb.notebook.state import RunState

_FINISHED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
_DONE = ("succeeded", "cached", "skipped", "failed", "cancelled")
_STATUS_COLOR = {"succeeded": "#15803d", "failed": "#b91c1c", "cancelled": "#6b7280", "waiting": "#c2410c",
                 "running": "#1d4ed8", "interrupted": "#b45309"}  # fmt: skip


class LiveView:
    """Widgets showing one run; ``paint`` redraws what changed since the last paint."""

    def __init__(
        self, state: RunState, graph: Graph, decide: Decide, *, painter: Painter | None = None,
        on_finished: Callable[[LiveView], None] | None = None,
    ) -> None:  # fmt: skip
        self.state = state
        self.graph = graph
        self.painter = painter or PAINTER
        # the first frame waits one interval too: events of a run's first moments
        # (its start, a wave of quick steps) then cost one paint, not several
        self.next_paint = time.monotonic() + self.painter.min_interval
        self._decide = decide
        self._on_finished = on_finished
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=max(1, len(graph.deps)), bar_style="info",
                                            layout=widgets.Layout(width="100%"))  # fmt: skip
        self.picture = widgets.HTML(layout=widgets.Layout(overflow="auto", max_height="600px"))
        self.cards_box = widgets.VBox()
        self.panels = widgets.Accordion()
        self.summary = widgets.HTML()
        self.widget = widgets.VBox(
            [self.header, self.progress, self.picture, self.cards_box, self.panels, self.summary]
        )
        self._cards: dict[str, CardWidget] = {}
        self._panels: dict[str, widgets.Output] = {}
        self._panel_seen: dict[str, tuple[Any, ...]] = {}
        self._painted_version = -1
        self._final = False

    # -- what the engine and the steps call ---------------------------------------------

    def poke(self) -> None:
        self.painter.poke(self)

    # -- drawing (the painter thread) --------------------------------------------------------

    def paint(self) -> None:
        s = self.state
        if s.version == self._painted_version and self._final:
            return
        s.fold()
        # one snapshot for the whole frame: picture, header and summary agree
        with s.lock:
            self._painted_version = s.version
            steps = {n: (v.status, v.attempts, v.duration_ms, v.error, v.reason, v.items_done, v.items)
                     for n, v in s.steps.items()}  # fmt: skip
            status, error, duration = s.status, s.error, s.duration_ms
            cards = [(c.step, c) for c in s.cards.values()]
            logs = {n: (len(v.outputs), v.log_chars) for n, v in s.steps.items() if v.outputs}
            details = s.details_locked()
        finished = status in _FINISHED
        if finished:  # steps that never started did not run: say so, not "pending"
            ended = "cancelled" if status in ("failed", "cancelled") else "pending"
            steps = {n: (ended, v[1], v[2], v[3], v[4], v[5], v[6]) if v[0] in ("pending", "running") else v
                     for n, v in steps.items()}  # fmt: skip
            details = {n: StepDetail(steps[n][0], d.duration_ms, d.attempts) if n in steps else d
                       for n, d in details.items()}  # fmt: skip
        self._paint_picture(details)
        done = sum(1 for n in self.graph.deps if steps.get(n, ("pending",))[0] in _DONE)
        counts: dict[str, int] = {}
        for st, *_ in steps.values():
            counts[st] = counts.get(st, 0) + 1
        self.progress.value = done
        self.progress.bar_style = {"failed": "danger", "succeeded": "success", "waiting": "warning"}.get(status, "info")
        color = _STATUS_COLOR.get(status, "#374151")
        took = f" in {format_duration(duration)}" if duration is not None else ""
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        self.header.value = (
            f"<b>{html.escape(s.flow)}</b> run <code>{s.run_id}</code>: "
            f"<span style='color:{color}'><b>{html.escape(status)}</b></span>{took} · "
            f"{done}/{len(self.graph.deps)} steps done ({html.escape(parts)})"
            + (f"<br><span style='color:#b91c1c'>{html.escape(error)}</span>" if error else "")
        )
        self._paint_cards(cards)
        self._paint_panels(logs, steps)
        if finished and not self._final:
            self._final = True
            self.summary.value = _summary(steps, self.graph)
            if self._on_finished is not None:
                self._on_finished(self)

    def _paint_picture(self, details: dict[str, StepDetail]) -> None:
        svg = layout_for(self.graph).fill(details)
        if svg != self.picture.value:
            self.picture.value = svg

    def _paint_cards(self, cards: list[tuple[str, Any]]) -> None:
        added = False
        for step, card in cards:
            w = self._cards.get(step)
            if w is None:
                w = self._cards[step] = CardWidget(card, self._decide)
                added = True
            else:
                w.update(card)
        if added:
            self.cards_box.children = tuple(c.box for c in self._cards.values())

    def _paint_panels(self, logs: dict[str, tuple[int, int]], steps: dict[str, tuple[Any, ...]]) -> None:
        added = False
        for name, seen in logs.items():
            if self._panel_seen.get(name) == seen:
                continue
            self._panel_seen[name] = seen
            out = self._panels.get(name)
            if out is None:
                out = self._panels[name] = widgets.Output()
                added = True
            with self.state.lock:
                items = [dict(d) for d in self.state.steps[name].outputs]
            out.outputs = tuple(items)
        if added:
            self.panels.children = tuple(self._panels.values())
        self.panels.titles = tuple(f"{n} · {steps.get(n, ('pending',))[0]}" for n in self._panels)

    def outputs_of(self, step: str) -> tuple[dict[str, Any], ...]:
        """What a step's panel shows (tests read it)."""
        out = self._panels.get(step)
        return tuple(out.outputs) if out is not None else ()


def _summary(steps: dict[str, tuple[Any, ...]], graph: Graph) -> str:
    rows = []
    for name in sorted(steps, key=lambda n: (graph.levels.get(n, 0), n)):
        status, attempts, duration, error, reason, items_done, items = steps[name]
        note = error if status == "failed" else (reason or "")
        if items is not None:
            note = f"{items_done}/{items} items" + (f"; {note}" if note else "")
        color = _STATUS_COLOR.get(status, "#374151")
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{graph.levels.get(name, '')}</td>"
            f"<td style='color:{color}'>{html.escape(status)}</td><td>{attempts}</td>"
            f"<td>{format_duration(duration) if duration is not None else ''}</td>"
            f"<td>{html.escape(str(note or ''))[:300]}</td></tr>"
        )
    return (
        "<table style='border-collapse:collapse;font-size:90%'><thead><tr><th>step</th><th>level</th>"
        "<th>status</th><th>attempts</th><th>duration</th><th>note</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
