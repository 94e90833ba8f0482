"""What a run looks like, folded from its events: the live view's model.

The same fold serves a run going on in this process (events arrive from the
engine as they are emitted) and ``%flow watch`` of any run (events replayed
from the store), so a closed browser tab loses nothing. The fold is cheap and
happens on the engine's thread; drawing happens elsewhere, from a snapshot.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flownb.render.picture import StepDetail
from flownb.store.base import Event
from flownb.store.events import RUN_FINISHED, ApprovalFold, EventName, Members, RunFold

MAX_PANEL_CHARS = 200_000  # a chatty step must not flood the browser
MAX_TOUCHED = 100_000  # names of changed steps kept for the views' next frames (a chatty step adds one a line)


@dataclass
class StepView:
    status: str = "pending"
    attempts: int = 0
    duration_ms: float | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    """The failed attempt's traceback as recorded (text); the view shows it as Jupyter shows errors."""
    reason: str | None = None
    outputs: list[dict[str, Any]] | tuple[()] = ()
    """What the step printed and displayed, in order, as Jupyter outputs (stream, display_data);
    a list from the first (most steps of a big flow show nothing, and a finished view keeps them)."""
    log_chars: int = 0
    live_attempts: set[str] | None = None
    """Attempts whose output arrived live (their recorded copy is not shown again); made on
    the first (a finished view keeps a thousand of these, most of them never used)."""
    items_done: int = 0
    items: int | None = None

    def shown(self) -> list[dict[str, Any]]:
        """``outputs``, to add to."""
        if not isinstance(self.outputs, list):
            self.outputs = []
        return self.outputs

    def heard_live(self, attempt_key: str) -> None:
        if self.live_attempts is None:
            self.live_attempts = set()
        self.live_attempts.add(attempt_key)


@dataclass
class Card:
    """An approval gate as the view shows it."""

    step: str
    message: str = ""
    requested_at: datetime | None = None
    decision: str | None = None
    decided_by: str | None = None
    comment: str | None = None
    via: str | None = None
    decided_at: datetime | None = None
    error: str | None = None  # why a click could not be delivered


class RunState:
    """The folded state of one run. Writers hold ``lock``; readers take a snapshot."""

    def __init__(self, run_id: str, flow: str, steps: list[str]) -> None:
        self.run_id = run_id
        self.flow = flow
        self.lock = threading.Lock()
        self.status = "pending"
        self.error: str | None = None
        self.duration_ms: float | None = None
        self.params: dict[str, Any] = {}
        self.steps: dict[str, StepView] = {s: StepView() for s in steps}
        self.cards: dict[str, Card] = {}
        #: the run as its events say it is; the views above are what the widgets show of it
        self.run = RunFold.of((), steps, payloads=False)
        self.version = 0  # bumped by every change; the view redraws when it moved
        #: the step views changed, in order, one name per change: a frame redoes only the steps
        #: named since the last one it drew (any number of views read it, each from its own place)
        self.touched: list[str] = []
        self.touched_epoch = 0  # moves when ``touched`` starts again (it is kept short): redo every step
        #: a ``run_ended`` event arrived (queued or folded): the view draws its final frame at once
        self.ending = False
        #: live events not folded yet: appended by the engine's thread, taken by whoever folds
        #: (a deque's append and popleft are atomic: no lock, and no event lost between them)
        self._pending: deque[Event] = deque()

    # -- folding --------------------------------------------------------------

    def push(self, e: Event) -> bool:
        """Queue a live event (the engine's thread): folded when someone looks. True when
        the views need telling: the first event since the last fold, and the run's end.

        The engine emits several events a step; folding them one by one on its
        thread cost a run about a tenth of its time. A list append does not.
        """
        pending = self._pending
        pending.append(e)
        self.version += 1
        if e.event == "run_ended":
            self.ending = True
            return True
        return len(pending) == 1

    def fold(self) -> None:
        """Apply the queued live events, in order."""
        pending = self._pending
        if not pending:
            return
        with self.lock:
            for _ in range(len(pending)):  # those queued now: a busy run never keeps a frame waiting
                self._apply(pending.popleft())

    def apply(self, e: Event) -> None:
        self.fold()
        with self.lock:
            if e.seq in self.run.seen:  # replay and live subscription may overlap: each event once
                return
            self._apply(e)
            self.version += 1
        if e.event == "run_ended":
            self.ending = True

    @property
    def last_seq(self) -> int:
        return self.run.last_seq

    def _step(self, name: str | None) -> tuple[StepView | None, str | None]:
        """The view of a step about to change (named in ``touched``); a foreach item ``x[3]``
        reports to ``x``."""
        if name is None:
            return None, None
        base = name.split("[", 1)[0]
        view = self.steps.get(base)
        if view is None:
            view = self.steps[base] = StepView()
        if len(self.touched) >= MAX_TOUCHED:
            self.touched, self.touched_epoch = [], self.touched_epoch + 1
        self.touched.append(base)  # everything that changes a step view comes through here
        return view, (name[len(base) :] or None)

    def _apply(self, e: Event) -> None:
        """Fold one event with the one reader of events (store/events.py), then show what changed."""
        run = self.run
        if not run.apply(e):
            return
        self.status = run.status
        self.error = run.error
        self.duration_ms = run.duration_ms
        if e.event == Members.RUN_STARTED:
            self.params = dict(run.params or {}) if isinstance(run.params, dict) else {}
        if e.step is None:
            return
        gate = run.approvals.get(e.step)
        if gate is not None and e.event in _GATE_EVENTS:
            self._card(gate)
        if e.event.startswith("step_"):
            self._show_step(e)

    def _card(self, gate: ApprovalFold) -> None:
        card = self.cards.setdefault(gate.step, Card(gate.step))
        card.message = gate.message or card.message
        card.requested_at = _when(gate.requested_at)
        card.decision, card.decided_by, card.comment, card.via = gate.decision, gate.decided_by, gate.comment, gate.via
        card.decided_at = _when(gate.decided_at)

    def _show_step(self, e: Event) -> None:
        assert e.step is not None
        view, item = self._step(e.step)
        if view is None:
            return
        p, name = e.payload, e.event
        base = self.run.steps[e.step if item is None else e.step[: -len(item)]]
        view.items_done, view.items = base.items_done, base.items
        if item is not None:  # a foreach item: its output and failure show in the step's panel
            if name == Members.STEP_FINISHED:
                self._late_log(view, f"{e.step}#{int(p.get('attempt') or 0)}", p, prefix=f"{e.step}: ")
                if p.get("status") == Members.FAILED:
                    view.error = p.get("error")
            return
        # a plain str, not the enum member: the tuples a view keeps of a step (its node, its
        # summary row) are then left alone by the garbage collector
        view.status, view.attempts, view.duration_ms = str(base.status), base.attempts, base.duration_ms
        if name == Members.STEP_RETRYING:
            view.error = base.error
        elif name == Members.STEP_FINISHED:
            view.reason = base.reason
            if base.status == Members.FAILED:
                view.error, view.error_type, view.traceback = base.error, base.error_type, base.traceback
            if p.get("stdout") or p.get("stderr") or p.get("displays"):  # most steps show nothing
                self._late_log(view, f"{e.step}#{int(p.get('attempt') or 0)}", p)

    def _late_log(self, view: StepView, key: str, p: dict[str, Any], prefix: str = "") -> None:
        """Recorded output of an attempt whose output did not arrive live (replay, late watch)."""
        if view.live_attempts is not None and key in view.live_attempts:
            return
        for stream in ("stdout", "stderr"):
            if p.get(stream):
                self._append(view, stream, prefix + p[stream] if prefix else p[stream])
        for bundle in p.get("displays") or ():
            view.shown().append(bundle)

    def log(self, step: str, stream: str, text: str, attempt: int) -> None:
        """Live output of a step (from worker threads or the engine loop)."""
        with self.lock:
            view, _ = self._step(step)
            if view is None:
                return
            view.heard_live(f"{step}#{attempt}")
            self._append(view, stream, text)
            self.version += 1

    def display(self, step: str, bundle: dict[str, Any], attempt: int = 0) -> None:
        """Something a step displayed, live (its recorded copy is then not replayed)."""
        with self.lock:
            view, _ = self._step(step)
            if view is not None:
                view.heard_live(f"{step}#{attempt}")
                view.shown().append(bundle)
                self.version += 1

    def card_error(self, step: str, message: str) -> None:
        with self.lock:
            self.cards.setdefault(step, Card(step)).error = message
            self.version += 1

    @staticmethod
    def _append(view: StepView, stream: str, text: str) -> None:
        if view.log_chars >= MAX_PANEL_CHARS:
            return
        text = text[: MAX_PANEL_CHARS - view.log_chars]
        view.log_chars += len(text)
        last = view.outputs[-1] if view.outputs else None
        if last is not None and last.get("output_type") == "stream" and last.get("name") == stream:
            view.shown()[-1] = {**last, "text": last["text"] + text}
        else:
            view.shown().append({"output_type": "stream", "name": stream, "text": text})

    # -- reading --------------------------------------------------------------

    def details(self) -> dict[str, StepDetail]:
        self.fold()
        with self.lock:
            return self.details_locked()

    def details_locked(self) -> dict[str, StepDetail]:
        """The picture's view of the steps; the caller holds ``lock``."""
        return {
            n: StepDetail(v.status, v.duration_ms, v.attempts, v.items_done, v.items) for n, v in self.steps.items()
        }

    @property
    def finished(self) -> bool:
        self.fold()
        return self.status in RUN_FINISHED

    @property
    def over(self) -> bool:
        """Ended, as far as its events say, queued ones too, without folding them (the tracker
        asks it of every followed run as each new run starts)."""
        return self.ending or self.status in RUN_FINISHED

    def counts(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for v in self.steps.values():
                out[v.status] = out.get(v.status, 0) + 1
            return out


_GATE_EVENTS = frozenset({EventName.APPROVAL_REQUESTED, EventName.APPROVAL_DECIDED, EventName.STEP_WAITING})


def _when(at: float | None) -> datetime | None:
    return datetime.fromtimestamp(at, UTC) if at is not None else None
