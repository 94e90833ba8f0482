"""What a run looks like, folded from its events: the live view's model.

The same fold serves a run going on in this process (events arrive from the
engine as they are emitted) and ``%flow watch`` of any run (events replayed
from the store), so a closed browser tab loses nothing. The fold is cheap and
happens on the engine's thread; drawing happens elsewhere, from a snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flownb.render.picture import StepDetail
from flownb.store.base import Event

MAX_PANEL_CHARS = 200_000  # a chatty step must not flood the browser


@dataclass
class StepView:
    status: str = "pending"
    attempts: int = 0
    duration_ms: float | None = None
    started: datetime | None = None
    error: str | None = None
    reason: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    """What the step printed and displayed, in order, as Jupyter outputs (stream, display_data)."""
    log_chars: int = 0
    live_attempts: set[str] = field(default_factory=set)  # attempts whose output arrived live
    items_done: int = 0
    items: int | None = None


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
        self.last_seq = 0
        self.version = 0  # bumped by every change; the view redraws when it moved
        self._pending: list[Event] = []

    # -- folding --------------------------------------------------------------

    def push(self, e: Event) -> None:
        """Queue a live event (the engine's thread): folded when someone looks.

        The engine emits several events a step; folding them one by one on its
        thread cost a run about a tenth of its time. A list append does not.
        """
        self._pending.append(e)
        self.version += 1

    def fold(self) -> None:
        """Apply the queued live events, in order."""
        if not self._pending:
            return
        with self.lock:
            pending, self._pending = self._pending, []
            for e in pending:
                if e.seq > self.last_seq:
                    self.last_seq = e.seq
                    self._apply(e)

    def apply(self, e: Event) -> None:
        self.fold()
        with self.lock:
            if e.seq <= self.last_seq:
                return  # replay and live subscription may overlap: each event once
            self.last_seq = e.seq
            self._apply(e)
            self.version += 1

    def _step(self, name: str | None) -> tuple[StepView | None, str | None]:
        """The view of a step; a foreach item ``x[3]`` reports to ``x``."""
        if name is None:
            return None, None
        base = name.split("[", 1)[0]
        view = self.steps.get(base)
        if view is None:
            view = self.steps[base] = StepView()
        return view, (name[len(base) :] or None)

    def _apply(self, e: Event) -> None:
        p = e.payload
        if e.event == "run_started":
            self.params = dict(p.get("params") or {})
            self.status = p.get("status", self.status)
        elif e.event in ("run_status", "run_ended"):
            self.status = p.get("status", self.status)
            if e.event == "run_ended":
                self.error = p.get("error")
                self.duration_ms = p.get("duration_ms")
        elif e.event in ("approval_requested", "step_waiting") and e.step:
            card = self.cards.setdefault(e.step, Card(e.step))
            card.message = p.get("message") or card.message
            card.requested_at = card.requested_at or e.ts
            if e.event == "step_waiting":
                self._step_event(e)
        elif e.event == "approval_decided" and e.step:
            card = self.cards.setdefault(e.step, Card(e.step))
            if card.decision is None:
                card.decision = p.get("decision")
                card.decided_by = p.get("decided_by")
                card.comment = p.get("comment")
                card.via = p.get("via")
                card.decided_at = e.ts
        elif e.event.startswith("step_"):
            self._step_event(e)

    def _step_event(self, e: Event) -> None:
        view, item = self._step(e.step)
        if view is None:
            return
        p = e.payload
        attempt = int(p.get("attempt") or 0)
        if item is not None:  # a foreach item: count it, keep its output in the step's panel
            if e.event == "step_finished":
                view.items_done += 1
                self._late_log(view, f"{e.step}#{attempt}", p, prefix=f"{e.step}: ")
                if p.get("status") == "failed":
                    view.error = p.get("error")
            return
        if e.event == "step_started":
            view.status = "running"
            view.attempts = max(view.attempts, attempt)
            view.started = e.ts
            view.items = p.get("items", view.items)
        elif e.event == "step_retrying":
            view.status = "retrying"
            view.error = p.get("error")
        elif e.event == "step_waiting":
            view.status = "waiting"
            view.attempts = max(view.attempts, attempt)
        elif e.event == "step_finished":
            view.status = p.get("status", view.status)
            view.attempts = max(view.attempts, attempt)
            view.duration_ms = p.get("duration_ms", view.duration_ms)
            view.reason = p.get("reason")
            view.error = p.get("error") if view.status == "failed" else view.error
            self._late_log(view, f"{e.step}#{attempt}", p)

    def _late_log(self, view: StepView, key: str, p: dict[str, Any], prefix: str = "") -> None:
        """Recorded output of an attempt whose output did not arrive live (replay, late watch)."""
        if key in view.live_attempts:
            return
        for stream in ("stdout", "stderr"):
            if p.get(stream):
                self._append(view, stream, prefix + p[stream] if prefix else p[stream])
        for bundle in p.get("displays") or ():
            view.outputs.append(bundle)

    def log(self, step: str, stream: str, text: str, attempt: int) -> None:
        """Live output of a step (from worker threads or the engine loop)."""
        with self.lock:
            view, _ = self._step(step)
            if view is None:
                return
            view.live_attempts.add(f"{step}#{attempt}")
            self._append(view, stream, text)
            self.version += 1

    def display(self, step: str, bundle: dict[str, Any], attempt: int = 0) -> None:
        """Something a step displayed, live (its recorded copy is then not replayed)."""
        with self.lock:
            view, _ = self._step(step)
            if view is not None:
                view.live_attempts.add(f"{step}#{attempt}")
                view.outputs.append(bundle)
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
            view.outputs[-1] = {**last, "text": last["text"] + text}
        else:
            view.outputs.append({"output_type": "stream", "name": stream, "text": text})

    # -- reading --------------------------------------------------------------

    def details(self) -> dict[str, StepDetail]:
        self.fold()
        with self.lock:
            return self.details_locked()

    def details_locked(self) -> dict[str, StepDetail]:
        """The picture's view of the steps; the caller holds ``lock``."""
        return {n: StepDetail(v.status, v.duration_ms, v.attempts) for n, v in self.steps.items()}

    @property
    def finished(self) -> bool:
        self.fold()
        return self.status in ("succeeded", "failed", "cancelled", "interrupted")

    def counts(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for v in self.steps.values():
                out[v.status] = out.get(v.status, 0) + 1
            return out
