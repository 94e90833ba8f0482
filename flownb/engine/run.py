"""``Run``: the handle a user holds on a run going on in the background."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from flownb.errors import FlownbError, RunCancelled, RunFailed
from flownb.store.base import Decision, Event, Store, utcnow

if TYPE_CHECKING:
    import pandas as pd

    from flownb.engine.execution import RunExecution
    from flownb.engine.observe import Observer, Subscription
    from flownb.engine.runtime import Runtime
    from flownb.model.flow import Graph


class Run:
    """A run of a flow. ``flow.run()`` returns one at once; the run goes on.

    ``wait()`` blocks (any thread), ``await run`` waits without blocking the
    caller's event loop (so a notebook can still deliver widget clicks).
    """

    def __init__(self, execution: RunExecution, runtime: Runtime) -> None:
        self._ex = execution
        self._rt = runtime

    @property
    def id(self) -> str:
        return self._ex.run_id

    @property
    def flow(self) -> str:
        return self._ex.plan.name

    @property
    def status(self) -> str:
        """pending, running, waiting, succeeded, failed, cancelled."""
        return self._ex.status

    @property
    def graph(self) -> Graph:
        """The flow as this run runs it: its steps (``graph.specs``), levels and dependents."""
        return self._ex.graph

    @property
    def parent_run_id(self) -> str | None:
        """The run this one is a sub-flow of, or None for a top-level run."""
        return self._ex.parent_run_id

    @property
    def resumed(self) -> bool:
        """Whether this run goes on from a resume (its earlier steps' outputs are restored)."""
        return self._ex.restored is not None

    @property
    def done(self) -> bool:
        return self._ex.done.done()

    @property
    def error(self) -> BaseException | None:
        return self._ex.error

    @property
    def outputs(self) -> dict[str, Any]:
        """Step name -> output, for the steps that succeeded so far."""
        return dict(self._ex.outputs)

    @property
    def step_status(self) -> dict[str, str]:
        """Step name -> its current status (in memory, live)."""
        return dict(self._ex.step_status)

    @property
    def levels(self) -> dict[str, int]:
        """Step name -> its topological level (0 for steps without dependencies)."""
        return dict(self._ex.graph.levels)

    @property
    def attempts(self) -> dict[str, int]:
        """Step name -> how many attempts it has made in this run."""
        return {n: a for n, a in self._ex.attempts.items() if "[" not in n}

    @property
    def steps(self) -> pd.DataFrame:
        """One row per attempt, as in the store's ``steps`` view."""
        return self._ex.store.steps_frame(self.id)

    @property
    def execution(self) -> RunExecution:
        return self._ex

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run ends; raise TimeoutError if it has not after ``timeout`` seconds."""
        try:
            self._ex.done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"run {self.id} is still {self.status} after {timeout:g}s"
                + (f"; waiting for approval of {', '.join(self.pending_approvals)}" if self.pending_approvals else "")
            ) from None
        return self

    def __await__(self) -> Generator[Any, None, Run]:
        yield from asyncio.wrap_future(self._ex.done).__await__()
        return self

    def raise_for_status(self) -> Run:
        """Raise the run's error unless it succeeded (call after wait)."""
        if self.status == "succeeded":
            return self
        if self.error is not None:
            raise self.error
        if self.status == "cancelled":
            raise RunCancelled(f"run {self.id} was cancelled")
        raise RunFailed(f"run {self.id} is {self.status}")

    def cancel(self) -> None:
        """Cancel the run: running steps are stopped (threads are abandoned), nothing new starts."""
        self._rt.loop.call_soon_threadsafe(self._ex.cancel)

    def pause(self) -> None:
        """No new step starts; running ones finish; the run shows ``paused`` until :meth:`resume`."""
        self._rt.call(self._ex.pause)

    def resume(self) -> None:
        """Go on after :meth:`pause`. (To finish an interrupted or failed run, use ``flow.resume``.)"""
        self._rt.call(self._ex.unpause)

    def observe(self, observer: Observer, *, replay: bool = True) -> Subscription:
        """Hear the run as it goes: its events as they are recorded, what its steps print, its
        outputs (engine/observe.py). ``replay`` first gives the events recorded so far, each
        event once; ``subscription.close()`` stops. Only for a run of this process: follow
        another process's run with :meth:`events`."""
        from flownb.engine.observe import observe

        return observe(self._ex, self._rt, observer, replay=replay)

    def add_done_callback(self, fn: Callable[[Run], None]) -> None:
        """Call ``fn(run)`` when the run ends (at once if it has), on the engine's thread."""
        self._ex.done.add_done_callback(lambda _: fn(self))

    def events(self, *, follow: bool = False, poll: float = 0.25) -> Iterator[Event]:
        """The run's events in order (the ``events`` table's rows); with ``follow=True``, live
        until the run ends. Observers (the live view, the CLI, the server) read runs this way."""
        yield from follow_events(self._ex.store, self.id, follow=follow, poll=poll, ended=lambda: self.done)

    @property
    def pending_approvals(self) -> list[str]:
        return self._ex.pending_approvals()

    def approve(self, step: str, comment: str | None = None, by: str | None = None, *, via: str = "api") -> None:
        self._decide(step, "approved", comment, by, via)

    def reject(self, step: str, comment: str | None = None, by: str | None = None, *, via: str = "api") -> None:
        self._decide(step, "rejected", comment, by, via)

    def _decide(self, step: str, decision: str, comment: str | None, by: str | None, via: str) -> None:
        if self.done:
            raise FlownbError(f"run {self.id} has ended ({self.status}); there is nothing to approve")
        d = Decision(self.id, step, decision, by or current_user(), comment, via, utcnow())
        self._rt.call(lambda: self._ex.decide(d))

    def __repr__(self) -> str:
        return f"<Run {self.id} of {self.flow!r}: {self.status}>"


def follow_events(
    store: Store, run_id: str, *, follow: bool, poll: float, ended: Callable[[], bool] | None = None
) -> Iterator[Event]:
    """A run's events from the store, in ``seq`` order, each once; with ``follow``, polled until the
    run has ended and its last events are read. An event committed late with a lower ``seq`` (an
    attempt's start held back until its end) is yielded when it arrives, not lost."""
    seen: set[int] = set()
    finished = False
    while True:
        store.flush()
        over = finished or (ended() if ended is not None else False)
        fresh = [e for e in store.run_events(run_id) if e.seq not in seen]
        for e in fresh:
            seen.add(e.seq)
            finished = finished or e.event == "run_ended"
            yield e
        if not follow or over or finished:  # run_ended is committed with everything before it
            return
        if not fresh:
            time.sleep(poll)


def current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
