"""``flownb.attach``: a handle on any run in the store, whichever process owns it.

A run going on in this process gives its own :class:`Run`. Any other run (owned
by another process, or over) is read from the store: its status as the
``runs`` view says (``interrupted`` once its owner is gone), its outputs loaded
from the values its steps committed, its events as the table holds them.
Decisions and commands (approve, reject, cancel, pause, resume) travel through
the store's inbox to the process that owns the run, which applies them within
a few seconds (engine/execution.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from flownb.engine.execution import CANCEL, CONTROL_STEP, PAUSE, RESUME
from flownb.engine.run import Run, current_user, follow_events
from flownb.errors import FlownbError, RunFailed, RunNotFound
from flownb.store.base import Decision, Event, Store, open_store, utcnow
from flownb.store.events import RUN_FINISHED, STEP_SUCCESS, RunFold, RunStatus

if TYPE_CHECKING:
    import pandas as pd

    from flownb.engine.execution import RunExecution
    from flownb.engine.observe import Observer, Subscription
    from flownb.engine.runtime import Runtime
    from flownb.model.flow import Graph

#: how often a waiting caller reads the run's status again
POLL_SECONDS = 0.25
VOLATILE = "volatile"


def attach(run_id: str, db: Any = None) -> Run:
    """A :class:`Run` for the run ``run_id`` (a unique prefix is enough) in the store ``db``."""
    from flownb.engine.runtime import find_active, runtime

    active = find_active(run_id)
    if active is not None:
        return Run(active, runtime())
    store = open_store(db)
    store.flush()
    found = [run_id] if store.run_events(run_id) else store.run_ids_like(run_id)
    if not found:
        raise RunNotFound(f"no run {run_id!r} in the store {store.path}; see flownb.history()")
    if len(found) > 1:
        raise RunNotFound(f"{run_id!r} matches several runs: {', '.join(found[:5])}; give more of the id")
    return AttachedRun(store, found[0], runtime())


class AttachedRun(Run):
    """A run this process reads from the store and controls through it."""

    def __init__(self, store: Store, run_id: str, runtime: Runtime) -> None:
        self._store = store
        self._id = run_id
        self._rt = runtime

    # -- reading ---------------------------------------------------------------------------

    def _fold(self) -> RunFold:
        self._store.flush()
        fold = RunFold.of(self._store.run_events(self._id))
        for d in self._store.decisions(self._id):
            if d.step != CONTROL_STEP:
                fold.decide(d.step, d.decision, d.decided_by, d.comment, d.via, d.ts.timestamp())
        return fold

    @property
    def id(self) -> str:
        return self._id

    @property
    def flow(self) -> str:
        return self._fold().flow

    @property
    def status(self) -> str:
        """As the ``runs`` view says: ``interrupted`` when a live-looking run's owner is gone."""
        row = self._store.run_row(self._id)
        return str(row["status"]) if row is not None else self._fold().status

    @property
    def done(self) -> bool:
        return self.status in RUN_FINISHED

    @property
    def error(self) -> BaseException | None:
        fold = self._fold()
        if fold.error:
            return RunFailed(fold.error)
        return None

    @property
    def outputs(self) -> dict[str, Any]:
        """Step name -> output, loaded from the store for the steps that succeeded (a volatile
        output, kept only by the process that made it, is left out)."""
        out: dict[str, Any] = {}
        for name, step in self._fold().base_steps().items():
            if step.status not in STEP_SUCCESS or not step.outputs:
                continue
            stored = {n: o for n, o in step.outputs.items() if o.get("codec") != VOLATILE}
            values = {n: self._store.load_value(self._id, name, n, o) for n, o in stored.items()}
            out[name] = values[name] if set(step.outputs) == {name} and name in values else values
        return out

    @property
    def step_status(self) -> dict[str, str]:
        return {n: str(s.status) for n, s in self._fold().base_steps().items()}

    @property
    def levels(self) -> dict[str, int]:
        return {n: s.level or 0 for n, s in self._fold().base_steps().items()}

    @property
    def attempts(self) -> dict[str, int]:
        return {n: s.attempts for n, s in self._fold().base_steps().items()}

    @property
    def steps(self) -> pd.DataFrame:
        return self._store.steps_frame(self._id)

    @property
    def execution(self) -> RunExecution:
        raise self._elsewhere()

    @property
    def graph(self) -> Graph:
        from flownb.model.flow import recorded_graph

        fold = self._fold()
        shape = fold.started.get("steps") or {n: {"kind": s.kind or "python"} for n, s in fold.base_steps().items()}
        return recorded_graph(fold.flow or "flow", shape)

    @property
    def parent_run_id(self) -> str | None:
        return self._fold().parent_run_id

    @property
    def resumed(self) -> bool:
        return self._fold().resumed > 0

    def observe(self, observer: Observer, *, replay: bool = True) -> Subscription:
        raise FlownbError(
            f"run {self._id} is not running in this process: follow it with run.events(follow=True)"
        )

    def add_done_callback(self, fn: Callable[[Run], None]) -> None:
        raise self._elsewhere()

    def _elsewhere(self) -> FlownbError:
        return FlownbError(f"run {self._id} is not running in this process; this handle reads it from the store")

    @property
    def pending_approvals(self) -> list[str]:
        fold = self._fold()
        if fold.status in RUN_FINISHED:
            return []
        gates = fold.approvals.items()
        return sorted(s for s, gate in gates if gate.requested_at is not None and gate.decision is None)

    def events(self, *, follow: bool = False, poll: float = POLL_SECONDS) -> Iterator[Event]:
        yield from follow_events(self._store, self._id, follow=follow, poll=poll, ended=lambda: self.done)

    # -- waiting ------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self._id} is still {self.status} after {timeout:g}s")
            time.sleep(POLL_SECONDS)
        return self

    def __await__(self) -> Generator[Any, None, Run]:
        yield from asyncio.get_running_loop().run_in_executor(None, self.wait).__await__()
        return self

    # -- deciding and steering ----------------------------------------------------------------

    def _decide(self, step: str, decision: str, comment: str | None, by: str | None, via: str) -> None:
        waiting = self.pending_approvals
        if step not in waiting:
            raise FlownbError(
                f"step {step!r} of run {self._id} is not waiting for approval (waiting: {', '.join(waiting) or 'none'})"
            )
        self._store.post_decision(Decision(self._id, step, decision, by or current_user(), comment, via, utcnow()))

    def _command(self, command: str, by: str | None = None, via: str = "api") -> None:
        status = self.status
        if status in RUN_FINISHED:
            raise FlownbError(f"run {self._id} has ended ({status}); there is nothing to {command}")
        self._store.post_decision(Decision(self._id, CONTROL_STEP, command, by or current_user(), None, via, utcnow()))

    def cancel(self) -> None:
        """Ask the run's owner to cancel it (it does within a few seconds)."""
        self._command(CANCEL)

    def pause(self) -> None:
        """Ask the run's owner to start no new step until :meth:`resume`."""
        self._command(PAUSE)

    def resume(self) -> None:
        if self.status != RunStatus.PAUSED:
            raise FlownbError(f"run {self._id} is {self.status}, not paused; to finish an interrupted run use "
                              f"flow.resume({self._id!r}) or flownb resume {self._id}")  # fmt: skip
        self._command(RESUME)

    def __repr__(self) -> str:
        return f"<Run {self._id}: {self.status} (attached)>"
