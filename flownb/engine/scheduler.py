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
from flownb.store.events import STEP_DONE, STEP_SUCCESS, Members, StepStatus

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
        #: step -> how many of its dependencies have not ended yet
        self.waiting_on: dict[str, int] = {}
        #: step -> how its dependencies that ended did: step -> status
        self.upstream: dict[str, dict[str, StepStatus]] = {}
        self.ready: deque[str] = deque()
        self.running = 0
        #: steps not ended yet; the run's steps are over at zero
        self.open = 0
        self.stopping = False
        #: paused: nothing new starts until it is resumed (running steps finish)
        self.paused = False
        self.all_done = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[Outcome]] = {}
        #: plain synchronous steps in flight by the fast path (see fastpath.py)
        self.fast_running: dict[str, fastpath.FastAttempt] = {}
        #: the executor takes plain synchronous steps with a callback (see fastpath.py)
        self.submits = hasattr(ex.executor, "submit")

    async def run(self) -> None:
        """Run every step not done yet; return when none is left running."""
        status = self.ex.step_status
        if self.ex.restored is None:  # a fresh run: nothing done, every root starts
            roots, counts = self.graph.fresh_start()
            self.waiting_on = dict(counts)
            self.ready.extend(roots)
            self.open = len(roots) + len(counts)
        else:
            self._resume_from({n for n, s in status.items() if s in STEP_DONE})
        if self.open == 0:
            return
        self.pump()
        if self.open > 0:
            await self.all_done.wait()
        failed = [n for n, s in status.items() if s == StepStatus.FAILED]
        if failed and self.ex.error is None:
            self.ex.error = RunFailed(
                f"run {self.ex.run_id} of flow {self.ex.plan.name!r}: step(s) {', '.join(failed)} failed"
            )

    def _resume_from(self, done: set[str]) -> None:
        """Schedule a resumed run: what each step waits for, and what its upstream steps
        done before the resume ended as (a trigger rule may decide on them at once)."""
        deps, status = self.graph.deps, self.ex.step_status
        self.waiting_on = {n: len(d - done) for n, d in deps.items() if n not in done}
        for n in self.waiting_on:
            ended = {d: status[d] for d in deps[n] if d in done}
            if ended:
                self.upstream[n] = ended
        self.open = len(self.waiting_on)
        for name in sorted(n for n, c in self.waiting_on.items() if c == 0):
            self._decide(name)

    def pump(self) -> None:
        """Start ready steps while there is room."""
        status = self.ex.step_status
        while self.ready and not (self.paused and not self.stopping):
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
            status[name] = Members.RUNNING
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
            self._ended(name, StepStatus.CANCELLED)
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
        ended = outcome.status
        self.ex.step_status[name] = ended
        if ended == StepStatus.FAILED and self.graph.specs[name].on_failure == "stop":
            self.ex.error = outcome.error
            self.stop()
        self._ended(name, ended)
        self.ex.recorder.commit(urgent=False)
        self._close(name)

    def succeeded(
        self, name: str, value: Any, status: StepStatus = StepStatus.SUCCEEDED, *, gate: bool = False
    ) -> None:
        """A step succeeded (its end is recorded): release its dependents once committed."""
        ex = self.ex
        if not gate:
            self.running -= 1
        ex.outputs[name] = value
        ex.step_status[name] = status
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
        self._ended(name, self.ex.step_status[name])
        self._close(name)

    # -- trigger rules ------------------------------------------------------------------------

    def _ended(self, name: str, how: StepStatus) -> None:
        """``name`` ended as ``how``: each dependent waiting for it learns it, and may be decided."""
        succeeded = how in STEP_SUCCESS
        specs, waiting_on, status = self.graph.specs, self.waiting_on, self.ex.step_status
        for child in self.graph.dependents.get(name, ()):
            if child not in waiting_on or status.get(child) != StepStatus.PENDING:
                continue
            waiting_on[child] -= 1
            if succeeded and specs[child].trigger_rule == "all_succeeded":
                # the common case: still waiting means nothing upstream failed (that would
                # have skipped it already), so it runs once the last dependency succeeds
                if not waiting_on[child]:
                    del waiting_on[child]
                    self.ready.append(child)
                continue
            self.upstream.setdefault(child, {})[name] = how
            self._decide(child)

    def _decide(self, name: str) -> None:
        """Start, skip, or keep waiting, as the step's trigger rule says of its upstream steps."""
        upstream = self.upstream.get(name)
        waiting = self.waiting_on[name]
        rule = self.graph.specs[name].trigger_rule
        if not upstream or (rule == "all_succeeded" and all(how in STEP_SUCCESS for how in upstream.values())):
            verdict = _WAIT if waiting else _RUN  # the common case, judged without sorting anything
        else:
            verdict = trigger_verdict(rule, upstream, waiting)
        if verdict == _WAIT:
            return
        del self.waiting_on[name]
        if verdict == _RUN:
            self.ready.append(name)
            return
        self.ex.skip(name, verdict)
        self.open -= 1
        self._ended(name, StepStatus.SKIPPED)

    def _close(self, name: str) -> None:
        self.open -= 1
        self.pump()
        if self.open <= 0:
            self.loop.soon(self.all_done.set)

    def stop(self) -> None:
        """Fail fast: running steps are cancelled, and nothing new starts but the steps that run
        whatever happened upstream (``trigger_rule="all_done"``: cleanup)."""
        self.stopping = True
        dropped = [n for n in self.waiting_on if self.graph.specs[n].trigger_rule != "all_done"]
        dropped += [n for n in self.ready if self.graph.specs[n].trigger_rule != "all_done"]
        self.ready = deque(n for n in self.ready if n not in dropped)
        for name in dropped:  # never started: they end here, unrecorded, so cleanup steps learn it
            self.waiting_on.pop(name, None)
            self.open -= 1
            self._ended(name, StepStatus.CANCELLED)
        self._cancel_fast()
        for task in list(self.tasks.values()):
            task.cancel()
        if self.open <= 0:
            self.all_done.set()

    def _cancel_fast(self) -> None:
        for name in list(self.fast_running):
            fastpath.cancel(self.ex, name)
            self.running -= 1
            self.ex.step_status[name] = StepStatus.CANCELLED
            self.open -= 1
            self._ended(name, StepStatus.CANCELLED)

    def failed_upstream(self, name: str) -> list[str]:
        """The dependencies of ``name`` that ended without an output."""
        return [d for d, how in self.upstream.get(name, {}).items() if how not in STEP_SUCCESS]

    async def cancel_all(self) -> None:
        """Cancel what runs (the run is ending with an error) and wait for the tasks to end."""
        self._cancel_fast()
        tasks = list(self.tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


_WAIT = "wait"
_RUN = "run"


def trigger_verdict(rule: str, upstream: dict[str, StepStatus], waiting: int) -> str:
    """"wait", "run", or the reason to skip: a step's trigger rule applied to its upstream steps."""
    failed = sorted(d for d, how in upstream.items() if how in (StepStatus.FAILED, StepStatus.CANCELLED))
    skipped = sorted(d for d, how in upstream.items() if how == StepStatus.SKIPPED)
    succeeded = any(how in STEP_SUCCESS for how in upstream.values())
    if rule == "all_succeeded":
        if failed:
            return f"upstream step {failed[0]!r} {upstream[failed[0]]}"
        if skipped:
            return f"upstream step {skipped[0]!r} was skipped"
    elif rule == "none_failed" and failed:
        return f"upstream step {failed[0]!r} {upstream[failed[0]]}"
    if waiting:
        return _WAIT
    if rule in ("none_failed", "one_succeeded") and upstream and not succeeded:
        return "no upstream step succeeded"
    return _RUN
