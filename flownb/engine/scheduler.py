"""Ready-queue scheduling of one run, on the engine's event loop.

Guarantees kept here:

* A step starts as soon as all of its dependencies are done, within the
  flow's ``max_concurrency``; levels are shown, never waited for.
* With ``durability="sync"`` a step's completion is committed before any of
  its dependents starts; completions that arrive together share a commit.
* A failed step with ``on_failure="stop"`` stops the run: nothing new starts,
  running steps are cancelled; with ``"continue"`` only its dependents are
  skipped, each with the reason.

Plain synchronous steps take the short way (fastpath.py); a worker that
finished one may settle it here while the loop sleeps (executors/loop.py): code that
runs on either side schedules with ``loop.soon()``.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flownb.engine import fastpath
from flownb.engine.stepper import Outcome, run_step
from flownb.errors import RunFailed, StepFailed
from flownb.model.dag import downstream
from flownb.store.events import STEP_DONE, STEP_SUCCESS, StepStatus

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution


class Scheduler:
    """Which steps of a run may start, and what happens when one ends."""

    def __init__(self, ex: RunExecution) -> None:
        self.ex = ex
        self.graph = ex.graph
        self.loop = ex.loop
        self.limit = ex.plan.max_concurrency
        self.sync = ex.plan.durability == "sync"
        #: step -> how many of its dependencies are not done yet
        self.waiting_on: dict[str, int] = {}
        self.ready: deque[str] = deque()
        self.running = 0
        #: steps not ended yet; the run's steps are over at zero
        self.open = 0
        self.stopping = False
        self.all_done = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[Outcome]] = {}
        #: plain synchronous steps in flight by the fast path (see fastpath.py)
        self.fast_running: dict[str, fastpath.FastAttempt] = {}
        #: the executor takes plain synchronous steps with a callback (see fastpath.py)
        self.submits = hasattr(ex.executor, "submit")

    async def run(self) -> None:
        """Run every step not done yet; return when none is left running."""
        status = self.ex.step_status
        done = {n for n, s in status.items() if s in STEP_DONE}
        self.waiting_on = {n: len(d - done) for n, d in self.graph.deps.items() if n not in done}
        self.ready.extend(sorted(n for n, c in self.waiting_on.items() if c == 0))
        self.open = len(self.waiting_on)
        if self.open == 0:
            return
        self.pump()
        await self.all_done.wait()
        failed = [n for n, s in status.items() if s == StepStatus.FAILED]
        if failed and self.ex.error is None:
            self.ex.error = RunFailed(
                f"run {self.ex.run_id} of flow {self.ex.plan.name!r}: step(s) {', '.join(failed)} failed"
            )

    def pump(self) -> None:
        """Start ready steps while there is room."""
        status = self.ex.step_status
        while self.ready and not self.stopping:
            name = self.ready[0]
            spec = self.graph.specs[name]
            gate = spec.kind == "approval"  # waiting holds no slot
            if not gate and self.running >= self.limit:
                return
            fast = self.submits and spec.plain
            if not fast and not self.loop.here():  # a worker settling a step starts plain steps only
                self.loop.soon(self.pump)
                return
            self.ready.popleft()
            if not gate:
                self.running += 1
            status[name] = StepStatus.RUNNING
            if fast:
                fastpath.start(self.ex, name)
                continue
            task = asyncio.get_running_loop().create_task(run_step(self.ex, name))
            self.tasks[name] = task
            task.add_done_callback(functools.partial(self._task_done, name, gate=gate))

    def _task_done(self, name: str, task: asyncio.Task[Outcome], *, gate: bool) -> None:
        self.tasks.pop(name, None)
        if task.cancelled():
            if not gate:
                self.running -= 1
            self.ex.step_status[name] = StepStatus.CANCELLED
            self._close(name)
            return
        exc = task.exception()
        self.settle(name, Outcome(StepStatus.FAILED, error=exc) if exc is not None else task.result(), gate=gate)

    def settle(self, name: str, outcome: Outcome, *, gate: bool = False) -> None:
        """A step is over (its end is recorded): release its dependents, or stop the run."""
        if outcome.status in STEP_SUCCESS:
            self.succeeded(name, outcome.value, outcome.status, gate=gate)
            return
        if not gate:
            self.running -= 1
        self.ex.step_status[name] = StepStatus(outcome.status)
        if outcome.status == StepStatus.FAILED:
            if self.graph.specs[name].on_failure == "stop":
                self.ex.error = outcome.error
                self.stop()
            else:
                self._skip_downstream(name, f"upstream step {name!r} failed")
        elif outcome.status == StepStatus.SKIPPED:
            self._skip_downstream(name, f"upstream step {name!r} was skipped")
        self.ex.recorder.commit(urgent=False)
        self._close(name)

    def succeeded(self, name: str, value: Any, status: str = StepStatus.SUCCEEDED, *, gate: bool = False) -> None:
        """A step succeeded (its end is recorded): release its dependents once committed."""
        ex = self.ex
        if not gate:
            self.running -= 1
        ex.outputs[name] = value
        ex.step_status[name] = StepStatus(status)
        for listener in ex.output_listeners:
            listener(ex, name, value)
        if not self.graph.dependents.get(name):  # nobody waits for this commit: it may share a later one
            ex.recorder.commit(urgent=False, starts=False)
            self._close(name)
            return
        # a worker settling the only step in flight commits it itself: nothing could join
        here = self.sync and self.running == 0 and not self.loop.here()
        commit = ex.recorder.commit(urgent=self.sync, starts=False, here=here)
        if self.sync and not commit.done():
            # committed before any dependent starts: release them from the commit's callback
            loop = self.loop
            commit.add_done_callback(lambda f: loop.call_soon_threadsafe(self._release, name, f))
        else:
            self._release(name, commit)

    def _release(self, name: str, commit: Future[None]) -> None:
        if commit.done() and commit.exception() is not None:
            if not self.loop.here():  # stopping the run cancels tasks: the loop's work
                self.loop.soon(self._release, name, commit)
                return
            self.ex.step_status[name] = StepStatus.FAILED
            self.ex.error = StepFailed(
                f"step {name!r} of run {self.ex.run_id} succeeded but could not be recorded: {commit.exception()}",
                step=name, run_id=self.ex.run_id,
            )  # fmt: skip
            self.stop()
            self._close(name)
            return
        status = self.ex.step_status
        for child in self.graph.dependents.get(name, ()):
            if child in self.waiting_on:
                self.waiting_on[child] -= 1
                if self.waiting_on[child] == 0 and status[child] == StepStatus.PENDING:
                    self.ready.append(child)
        self._close(name)

    def _close(self, name: str) -> None:
        self.open -= 1
        self.pump()
        if self.open <= 0 or (self.stopping and not self.tasks and not self.fast_running):
            self.loop.soon(self.all_done.set)

    def stop(self) -> None:
        """Fail fast: no new steps; running ones are cancelled."""
        self.stopping = True
        self._cancel_fast()
        for task in list(self.tasks.values()):
            task.cancel()
        if not self.tasks:
            self.all_done.set()

    def _cancel_fast(self) -> None:
        for name in list(self.fast_running):
            fastpath.cancel(self.ex, name)
            self.running -= 1
            self.ex.step_status[name] = StepStatus.CANCELLED
            self.open -= 1

    def _skip_downstream(self, root: str, reason: str) -> None:
        status = self.ex.step_status
        for child in sorted(downstream(self.graph.deps, [root])):
            if status.get(child) == StepStatus.PENDING:
                self.ex.skip(child, reason)
                self.open -= 1
                self.waiting_on.pop(child, None)

    async def cancel_all(self) -> None:
        """Cancel what runs (the run is ending with an error) and wait for the tasks to end."""
        self._cancel_fast()
        tasks = list(self.tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
