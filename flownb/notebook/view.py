"""The live view of a run: header, progress, graph, approval cards, step panels, summary.

Only the painter thread changes these widgets, from a snapshot of the run's
:class:`RunState` (the first frame is drawn by the constructor, before anyone
else holds the view); the engine folds events and pokes, clicks post decisions
or ask for a panel. Guarantees:

* The view shows a frame as soon as it exists, and any change within the
  painter's ``MAX_INTERVAL`` (see painter.py); it never waits for a layout.
* The frame drawn after ``run_ended`` arrived is the final state, drawn at once
  (an urgent poke), and ``wait_final`` returns when it is on its way to the browser.
* A failed step's panel opens by itself, with its traceback as Jupyter shows a
  cell's error; a click on a node opens that step's panel.
"""

from __future__ import annotations

import copy
import html
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import ipywidgets as widgets

from flownb.notebook.assets import VIEW_CSS
from flownb.notebook.cards import CardWidget, Decide
from flownb.notebook.graph_widget import GraphWidget, NodeState
from flownb.notebook.painter import PAINTER, Painter
from flownb.notebook.state import StepView
from flownb.notebook.tracebacks import error_output
from flownb.render import (
    StepDetail,
    SummaryFields,
    cached_layout,
    detail_text,
    layout_async,
    run_heading,
    static_report,
    summary_table,
)

if TYPE_CHECKING:
    from flownb.model.flow import Graph
    from flownb.notebook.state import RunState

_FINISHED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
_DONE = ("succeeded", "cached", "skipped", "failed", "cancelled")
_BAR = {"failed": "danger", "succeeded": "success", "waiting": "warning", "interrupted": "warning"}


class Frame(NamedTuple):
    """One redraw, for the frame timeline tests and the benchmark read."""

    at: float  # time.monotonic() when it was drawn
    poked: float  # the earliest poke it answers (== at for the first frame)
    wall: float  # time.time() when it was drawn (events carry wall-clock times)
    status: str
    done: int
    final: bool


class LiveView:
    """Widgets showing one run; ``paint`` redraws what changed since the last paint."""

    def __init__(
        self, state: RunState, graph: Graph, decide: Decide, *, painter: Painter | None = None,
        on_finished: Callable[[LiveView], None] | None = None,
    ) -> None:  # fmt: skip
        self.state = state
        self.graph = graph
        self.painter = painter or PAINTER
        self.next_paint = 0.0
        self.frames: deque[Frame] = deque(maxlen=5000)
        #: set once the final frame (the run's end) has been drawn
        self.final_drawn = threading.Event()
        #: time.monotonic() when the laid-out picture was sent (the frames before it had none)
        self.picture_at: float | None = None
        self._decide = decide
        self._on_finished = on_finished
        self._poked: float | None = None
        self.style = widgets.HTML(f"<style>{VIEW_CSS}</style>")
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=max(1, len(graph.deps)), bar_style="info",
                                            layout=widgets.Layout(width="100%"))  # fmt: skip
        self.picture = GraphWidget(on_select=self.select)
        self.cards_box = widgets.VBox()
        self.panels = widgets.Accordion()
        self.summary = widgets.HTML()
        self.widget = widgets.VBox(
            [self.style, self.header, self.progress, self.picture, self.cards_box, self.panels, self.summary]
        )
        self.widget.add_class("flownb-live")
        self._cards: dict[str, CardWidget] = {}
        self._panels: dict[str, widgets.Output] = {}
        self._panel_seen: dict[str, tuple[Any, ...]] = {}
        self._titles: tuple[str, ...] = ()
        self._select: str | None = None
        self._layout_asked = False
        self._nodes: dict[str, tuple[tuple[Any, ...], NodeState]] = {}
        #: what the last frame showed of each step, and where it stopped reading the state's changes
        self._snaps: dict[str, _Snap] = {}
        self._counts: dict[str, int] = {}  # the snaps by status, kept as they change
        self._done = 0
        self._node_states: dict[str, NodeState] = {}
        self._touched_at = 0
        self._touched_epoch = -1
        self._opened_failure = False
        self._final = False
        self._static: str | None = None
        self._rows: list[SummaryFields] = []  # the final summary's rows
        self._heading = ""
        # the first frame: the output shows the run's state from its first moment; the next
        # comes at the painter's next slot, as after any redraw (a poke now adds nothing to it)
        started = time.monotonic()
        self.paint()
        self.painter.pace(self, started, time.monotonic())

    # -- what the engine, the steps and the browser call ----------------------------------------

    def poke(self) -> None:
        """Something changed (any thread): redraw at the next slot, at once when the run ended."""
        if self._poked is None:
            self._poked = time.monotonic()
        self.painter.poke(self, urgent=self.state.ending and not self._final)

    def select(self, step: str) -> None:
        """A click on a node (the kernel's thread): open that step's panel at the next frame."""
        if step in self.graph.specs or step in self.state.steps:
            self._select = step
            self.poke()

    def wait_final(self, timeout: float | None = None) -> bool:
        """Block until the final frame was drawn; False on timeout."""
        return self.final_drawn.wait(timeout)

    # -- drawing (the painter thread) --------------------------------------------------------------

    def paint(self) -> None:
        s = self.state
        poked, self._poked = self._poked, None
        s.fold()
        # one snapshot for the whole frame: header, graph, panels and summary agree; only the
        # steps changed since the last frame are copied again (a frame of 1,000 steps where ten
        # moved copies ten)
        with s.lock:
            fresh = self._refresh_snaps(s)
            steps = self._snaps
            status, error, duration = s.status, s.error, s.duration_ms
            started = s.run.started_at
            cards = list(s.cards.values())
            logs = {n: v for n, v in steps.items() if v.outputs or v.status == "failed"}
        finished = status in _FINISHED
        if finished:  # steps that never started did not run: say so, not "pending"
            ended = "cancelled" if status in ("failed", "cancelled") else "pending"
            for name, snap in steps.items():
                if snap.status in ("pending", "running", "retrying", "waiting"):
                    steps[name] = snap.ended_as(ended)  # a copy: untouched steps share theirs
                    fresh.add(name)
            self._tally(steps)  # ... and count as that
        done, counts = self._done, self._counts
        heading = run_heading(s.flow, s.run_id, status, done=done, total=len(self.graph.deps), counts=counts,
                              duration_ms=duration, error=error, live=True)  # fmt: skip
        if heading != self.header.value:
            self.header.value = heading
        if self.progress.value != done:
            self.progress.value = done
        bar = _BAR.get(status, "info")
        if self.progress.bar_style != bar:
            self.progress.bar_style = bar
        elapsed = duration if duration is not None else ((time.time() - started) * 1000 if started else 0.0)
        self._paint_graph(steps, fresh, elapsed, finished)
        self._paint_cards(cards)
        self._paint_panels(logs, steps)
        now = time.monotonic()
        if finished and not self._final:
            self._final = True
            self._heading = run_heading(s.flow, s.run_id, status, done=done, total=len(self.graph.deps),
                                        counts=counts, duration_ms=duration, error=error, live=False)  # fmt: skip
            self._rows = self._summary_rows(steps)
            self.summary.value = summary_table(self._rows, live=True)
            self.frames.append(Frame(now, poked or now, time.time(), status, done, True))
            self.final_drawn.set()
            if self._on_finished is not None:
                self._on_finished(self)
        else:
            self.frames.append(Frame(now, poked or now, time.time(), status, done, False))
        if finished:
            self._forget_frames()

    def _forget_frames(self) -> None:
        """Let go of what the live frames kept of each step: a finished view may stay in the
        notebook for the whole session, and a later frame (a click) copies the steps again."""
        self._snaps, self._node_states, self._nodes = {}, {}, {}

    def _refresh_snaps(self, s: RunState) -> set[str]:
        """Copy the steps changed since the last frame (the caller holds the state's lock);
        their names."""
        if s.touched_epoch != self._touched_epoch or not self._snaps:
            self._touched_epoch, self._touched_at = s.touched_epoch, len(s.touched)
            # a step no event has reached yet (every change is in ``touched`` while its epoch is 0)
            # shares one copy: the first frame of a big run copies the few steps that began
            moved = set(s.touched) if s.touched_epoch == 0 else None
            self._snaps = {
                n: _Snap.of(v) if moved is None or n in moved else _UNTOUCHED for n, v in s.steps.items()
            }
            self._tally(self._snaps)
            return set(self._snaps)
        fresh = set(s.touched[self._touched_at :])
        self._touched_at = len(s.touched)
        snaps, counts, scheduled = self._snaps, self._counts, self.graph.deps
        for name in fresh:  # the header's counts follow the steps that moved, not all of them
            old = snaps.get(name)
            new = snaps[name] = _Snap.of(s.steps[name])
            if old is not None:
                left = counts[old.status] - 1
                if left:
                    counts[old.status] = left
                else:
                    del counts[old.status]
                self._done -= name in scheduled and old.status in _DONE
            counts[new.status] = counts.get(new.status, 0) + 1
            self._done += name in scheduled and new.status in _DONE
        return fresh

    def _tally(self, steps: dict[str, _Snap]) -> None:
        """Count the steps by status, and those of the schedule that are done (the header)."""
        counts: dict[str, int] = {}
        for snap in steps.values():
            counts[snap.status] = counts.get(snap.status, 0) + 1
        self._counts = counts
        self._done = sum(1 for n in self.graph.deps if n in steps and steps[n].status in _DONE)

    def _paint_graph(self, steps: dict[str, _Snap], fresh: set[str], elapsed_ms: float, finished: bool) -> None:
        specs, nodes = self.graph.specs, self._node_states
        for name in fresh:
            if name in specs:
                snap = steps[name]
                nodes[name] = _UNTOUCHED_NODE if snap is _UNTOUCHED else self._node(name, snap)
        if not self.picture.svg:
            layout = cached_layout(self.graph)
            if layout is None and not self._layout_asked:
                self._layout_asked = True  # one request: the layout's thread pokes when it is ready
                layout = layout_async(self.graph, self.poke)
            if layout is not None:  # sent once, every step pending: the browser colours it from the states
                self.picture.set_picture(layout.pending)
                self.picture_at = time.monotonic()
        if finished:
            self.picture.finish(nodes, elapsed_ms)
        else:
            self.picture.update(nodes, elapsed_ms, running=True)

    def _node(self, name: str, snap: _Snap) -> NodeState:
        """(status, label, note): tens of bytes a step; the browser makes the tooltip from them.

        Kept per step while its fields stay the same: a frame of 1,000 steps formats only
        the labels that changed.
        """
        key = (snap.status, snap.duration_ms, snap.attempts, snap.items_done, snap.items, snap.error, snap.reason)
        found = self._nodes.get(name)
        if found is not None and found[0] == key:
            return found[1]
        note = snap.error if snap.status == "failed" else snap.reason
        node = (snap.status, detail_text(snap.detail()), (note or "")[:300])
        self._nodes[name] = (key, node)
        return node

    def _paint_cards(self, cards: list[Any]) -> None:
        added = False
        for card in cards:
            w = self._cards.get(card.step)
            if w is None:
                w = self._cards[card.step] = CardWidget(card, self._decide)
                added = True
            else:
                w.update(card)
        if added:
            self.cards_box.children = tuple(c.box for c in self._cards.values())

    def _paint_panels(self, logs: dict[str, _Snap], steps: dict[str, _Snap]) -> None:
        wanted = dict(logs)
        select = self._select
        if select is not None and select in steps:
            wanted.setdefault(select, steps[select])
        added = False
        for name, snap in wanted.items():
            seen = (snap.count, snap.chars, snap.status, snap.traceback is not None)
            if self._panel_seen.get(name) == seen:
                continue
            self._panel_seen[name] = seen
            out = self._panels.get(name)
            if out is None:
                out = self._panels[name] = widgets.Output()
                added = True
            with self.state.lock:
                items = [dict(d) for d in self.state.steps[name].outputs]
            if snap.status == "failed":
                items.append(error_output(snap.traceback, snap.error_type, snap.error))
            if not items:
                items.append(_note(f"{name}: {snap.status}, nothing printed or displayed"))
            out.outputs = tuple(items)
        names = list(self._panels)
        if added:
            self.panels.children = tuple(self._panels.values())
        titles = tuple(f"{n} · {steps[n].status if n in steps else 'pending'}" for n in names)
        if titles != self._titles:
            self._titles = titles
            self.panels.titles = titles
        failed = next((n for n in names if steps.get(n) is not None and steps[n].status == "failed"), None)
        if failed is not None and not self._opened_failure:
            self._opened_failure = True
            self.panels.selected_index = names.index(failed)
        if select is not None and select in self._panels:
            self._select = None
            self.panels.selected_index = names.index(select)

    def _summary_rows(self, steps: dict[str, _Snap]) -> list[SummaryFields]:
        levels = self.graph.levels
        rows: list[SummaryFields] = []
        for name in sorted(steps, key=lambda n: (levels.get(n, 0), n)):
            snap = steps[name]
            note = (snap.error if snap.status == "failed" else snap.reason) or ""
            if snap.items is not None:
                note = f"{snap.items_done}/{snap.items} items" + (f"; {note}" if note else "")
            rows.append((name, levels.get(name), snap.status, snap.attempts, snap.duration_ms, note))
        return rows

    # -- the static picture ---------------------------------------------------------------------

    def static_html(self, timeout: float = 10.0) -> str | None:
        """The final state as self-contained HTML (picture and summary), once the run has ended.

        Waits for the graph's layout when it is still being made (at most ``timeout``
        seconds; without it, the HTML has no picture).
        """
        if not self._final:
            return None
        if self._static is None:
            layout = cached_layout(self.graph)
            if layout is None:
                done = threading.Event()
                if layout_async(self.graph, done.set) is None and done.wait(timeout):
                    layout = cached_layout(self.graph)
            details = {step: StepDetail(status, took, tries) for step, _, status, tries, took, _ in self._rows}
            svg = layout.fill(details) if layout is not None else None
            self._static = static_report(self._heading, svg, self._rows)
        return self._static

    def outputs_of(self, step: str) -> tuple[dict[str, Any], ...]:
        """What a step's panel shows (tests read it)."""
        out = self._panels.get(step)
        return tuple(out.outputs) if out is not None else ()


class _Snap:
    """A step as one frame shows it (copied under the state's lock)."""

    __slots__ = ("attempts", "chars", "count", "duration_ms", "error", "error_type", "items", "items_done",
                 "outputs", "reason", "status", "traceback")  # fmt: skip

    def __init__(self, v: StepView) -> None:
        self.status = v.status
        self.attempts = v.attempts
        self.duration_ms = v.duration_ms
        self.error, self.error_type, self.traceback, self.reason = v.error, v.error_type, v.traceback, v.reason
        self.items_done, self.items = v.items_done, v.items
        self.count, self.chars = len(v.outputs), v.log_chars
        self.outputs = bool(v.outputs)

    @classmethod
    def of(cls, v: StepView) -> _Snap:
        return cls(v)

    def detail(self) -> StepDetail:
        return StepDetail(self.status, self.duration_ms, self.attempts, self.items_done, self.items)

    def ended_as(self, status: str) -> _Snap:
        """A copy of this step with another status (a run that ended before the step did)."""
        twin = copy.copy(self)
        twin.status = status
        return twin


#: the copy every step shares until an event reaches it, and its node
_UNTOUCHED = _Snap(StepView())
_UNTOUCHED_NODE: NodeState = (_UNTOUCHED.status, detail_text(_UNTOUCHED.detail()), "")


def _note(text: str) -> dict[str, Any]:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": text, "text/html": f"<i class='flownb-muted'>{html.escape(text)}</i>"}}  # fmt: skip
