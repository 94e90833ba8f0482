"""Following runs: fold their events into states, feed views, publish outputs.

Every top-level run this process starts is followed from its creation (the
session watches run starts, and observes each run before its first event, so
none is missed); any other run is followed by replaying its events and then
observing it (a run of this process) or polling the store (another process's).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flownb.engine.observe import Observer
from flownb.engine.runtime import find_run
from flownb.notebook.state import RunState
from flownb.store.base import Event, Store

if TYPE_CHECKING:
    from flownb.engine.run import Run

POLL_SECONDS = 0.25  # a run of another process: its view moves at least twice a second (issue 15)
KEEP_FINISHED = 20  # states of finished runs kept for %flow watch without a replay


class Tracker:
    """The followed runs of one session, by run id."""

    def __init__(self, publish: Callable[[Run, str, Any], None]) -> None:
        self.states: dict[str, RunState] = {}
        self.pokes: dict[str, list[Callable[[], None]]] = {}
        self.publish = publish
        self._lock = threading.Lock()

    def on_start(self, run: Run) -> None:
        """Follow a new top-level run before it starts (``watch_starts``): no event is missed."""
        if run.parent_run_id is not None:
            return
        state = RunState(run.id, run.flow, list(run.graph.specs))
        if run.resumed:  # show its history first
            for e in run.events():
                state.apply(e)
            for name, value in run.outputs.items():
                self.publish(run, name, value)
        self._register(state)
        run.observe(_Follower(self, state, run), replay=False)

    def _register(self, state: RunState) -> None:
        with self._lock:
            self.states[state.run_id] = state
            finished = [r for r, s in self.states.items() if s.over]
            for run_id in finished[:-KEEP_FINISHED]:
                self.states.pop(run_id, None)
                self.pokes.pop(run_id, None)

    def event_of(self, state: RunState, e: Event) -> None:
        if state.push(e):  # else a redraw that folds this one too is due already
            self.poke(state.run_id)

    def log_of(self, state: RunState, step: str, attempt: int, stream: str, text: Any) -> None:
        if stream == "display":
            state.display(step, text, attempt)
        else:
            state.log(step, stream, text, attempt)
        self.poke(state.run_id)

    def poke(self, run_id: str) -> None:
        for poke in list(self.pokes.get(run_id, ())):
            poke()

    def subscribe(self, run_id: str, poke: Callable[[], None]) -> None:
        self.pokes.setdefault(run_id, []).append(poke)

    def follow(self, store: Store, run_id: str, flow: str, steps: list[str]) -> RunState:
        """The state of any run: already followed, active here, or replayed from the store."""
        state = self.states.get(run_id)
        if state is not None:
            return state
        state = RunState(run_id, flow, steps)
        run = find_run(run_id)
        if run is not None:  # what it recorded so far, then each event as it comes
            run.observe(_Follower(self, state, run, from_start=False), replay=True)
        else:
            for e in store.run_events(run_id):
                state.apply(e)
        self._register(state)
        if run is None and not state.finished:
            threading.Thread(target=self._poll, args=(store, state), name=f"flownb-watch-{run_id}", daemon=True).start()
        return state

    def _poll(self, store: Store, state: RunState) -> None:
        """A run owned by another process: read its new events until it ends."""
        import time

        from flownb.errors import FlownbError

        while not state.finished:
            time.sleep(POLL_SECONDS)
            try:
                events = store.run_events(state.run_id)
            except FlownbError:
                continue  # the other process holds the file; ask again later
            for e in events:
                state.apply(e)  # the fold takes each event once, a late one too
            self.poke(state.run_id)


class _Follower(Observer):
    """A followed run's events (and, followed from its start, its logs) into its state; the
    outputs of a run this session started, to the session."""

    def __init__(self, tracker: Tracker, state: RunState, run: Run, *, from_start: bool = True) -> None:
        self._tracker = tracker
        self._state = state
        self._run = run
        self._from_start = from_start

    def on_event(self, event: Event) -> None:
        self._tracker.event_of(self._state, event)

    def on_log(self, step: str, attempt: int, stream: str, text: Any) -> None:
        if self._from_start:
            self._tracker.log_of(self._state, step, attempt, stream, text)

    def on_output(self, step: str, value: Any) -> None:
        if self._from_start:
            self._tracker.publish(self._run, step, value)
