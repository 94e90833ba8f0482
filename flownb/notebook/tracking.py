"""Following runs: fold their events into states, feed views, publish outputs.

Every top-level run this process starts is followed from its creation (the
runtime's ``on_start`` hook runs before the run starts, so no event is
missed); any other run, here or in another process, is followed by replaying
its events from the store and then listening (here) or polling (elsewhere).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flownb.engine.runtime import find_active
from flownb.notebook.state import RunState
from flownb.store.base import Event, Store

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution

POLL_SECONDS = 0.25  # a run of another process: its view moves at least twice a second (issue 15)
KEEP_FINISHED = 20  # states of finished runs kept for %flow watch without a replay


class Tracker:
    """The followed runs of one session, by run id."""

    def __init__(self, publish: Callable[[RunExecution, str, Any], None]) -> None:
        self.states: dict[str, RunState] = {}
        self.pokes: dict[str, list[Callable[[], None]]] = {}
        self.decisions: dict[str, list[Any]] = {}
        self._publish = publish
        self._lock = threading.Lock()

    def on_start(self, ex: RunExecution) -> None:
        """The runtime hook: follow a new top-level run before it starts."""
        if ex.depth > 0:
            return
        state = RunState(ex.run_id, ex.plan.name, list(ex.graph.specs))
        if ex.restored is not None:  # a resumed run: show its history first
            for e in ex.store.run_events(ex.run_id):
                state.apply(e)
            for name, value in ex.outputs.items():
                self._publish(ex, name, value)
        self._register(state)
        ex.recorder.listeners.append(lambda e: self._on_event(state, e))
        ex.log_listeners.append(lambda x, step, stream, text: self._on_log(state, x, step, stream, text))
        ex.output_listeners.append(self._publish)

    def _register(self, state: RunState) -> None:
        with self._lock:
            self.states[state.run_id] = state
            finished = [r for r, s in self.states.items() if s.finished]
            for run_id in finished[:-KEEP_FINISHED]:
                self.states.pop(run_id, None)
                self.pokes.pop(run_id, None)

    def _on_event(self, state: RunState, e: Event) -> None:
        state.push(e)
        for hook in self.decisions.get(state.run_id, ()):
            hook(e)
        self.poke(state.run_id)

    def _on_log(self, state: RunState, ex: RunExecution, step: str, stream: str, text: Any) -> None:
        if stream == "display":
            state.display(step, text, ex.attempts.get(step, 0))
        else:
            state.log(step, stream, text, ex.attempts.get(step, 0))
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
        ex = find_active(run_id)
        if ex is not None:
            from flownb.engine.runtime import runtime

            # subscribe on the engine's thread, then submit what is still queued: every
            # event before the subscription is then in the store, every later one arrives here
            def attach() -> Any:
                ex.recorder.listeners.append(lambda e: self._on_event(state, e))
                return ex.recorder.commit()

            runtime().call(attach).result()
        for e in store.run_events(run_id):
            state.apply(e)
        self._register(state)
        if ex is None and not state.finished:
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
