"""A run in progress: its lifecycle, and the small objects that each own a part of it.

* :class:`~flownb.engine.scheduler.Scheduler`: which steps may start, what
  happens when one ends (the ready queue, concurrency, fail fast, skips);
* :class:`~flownb.engine.journal.Journal`: what is recorded about each step;
* :class:`~flownb.engine.gates.Gates`: approval requests and decisions.

This object starts and ends the run, holds its status, params and outputs, and
runs sub-flows. A step whose success was committed is never executed again for
this run (resume restores it from the store instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flownb.engine.clock import SYSTEM, Clock
from flownb.engine.context import StepContext
from flownb.engine.gates import Gates
from flownb.engine.journal import Journal, format_error, new_log
from flownb.engine.params import PARAMS_STEP, RecordedParams, record_params
from flownb.engine.recorder import Recorder
from flownb.engine.scheduler import Scheduler
from flownb.engine.stepper import Outcome
from flownb.errors import FlownbError, RunCancelled, RunFailed, StepFailed, StoreError
from flownb.executors import resolve_executor
from flownb.executors.capture import StepLog
from flownb.model.spec import StepSpec
from flownb.store import events as ev
from flownb.store.base import Decision, Store
from flownb.store.events import RunStatus, StepStatus

if TYPE_CHECKING:
    from flownb.engine.resume import Restored
    from flownb.engine.runtime import Runtime
    from flownb.model.flow import RunPlan

MAX_DEPTH = 5
#: the inbox's step name for commands to a whole run, and the commands
CONTROL_STEP = "__run__"
CANCEL, PAUSE, RESUME = "cancel", "pause", "resume"
#: how often the owner reads its inbox for commands: seldom enough that the store's file is let go
#: between reads (other processes take their turns with it), often enough to answer within seconds
CONTROL_POLL_SECONDS = 2.0


class RunExecution:
    def __init__(
        self, runtime: Runtime, plan: RunPlan, params: dict[str, Any], store: Store,
        run_id: str, *, timeout: float | None = None, parent_run_id: str | None = None,
        depth: int = 0, restored: Restored | None = None, clock: Clock = SYSTEM, trigger: str = "manual",
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.plan = plan
        self.graph = plan.graph
        self.params = params
        self.store = store
        self.run_id = run_id
        self.timeout = timeout
        self.parent_run_id = parent_run_id
        self.depth = depth
        self.restored = restored
        self.clock = clock
        #: the engine's loop; a worker may act in its stead (see executors/loop.py): plain steps'
        #: completions are settled by whoever holds ``loop.lock``
        self.loop = runtime.loop
        self.recorder = Recorder(store, run_id, runtime.loop, restored.next_seq if restored else 1, clock=clock)
        self.recorder.secrets.add_params(params)  # scrubbed by value from all the run records
        self.executor = resolve_executor(plan.executor)
        self.status = RunStatus.PENDING
        self.error: BaseException | None = None
        self.outputs: dict[str, Any] = dict(restored.outputs) if restored else {}
        self.restored_items: dict[str, Any] = dict(restored.items) if restored else {}
        #: each step's current status: set by the scheduler, the stepper and the gates
        self.step_status: dict[str, StepStatus] = dict.fromkeys(self.graph.deps, StepStatus.PENDING)
        self.done: Future[None] = Future()
        #: called with (execution, step, stream, text) as a step writes (stream "display": a bundle)
        self.log_listeners: list[Any] = []
        #: called with (execution, step, value) once a step's output is available
        self.output_listeners: list[Any] = []
        self.journal = Journal(
            self.recorder, self.graph, clock, json.dumps(_jsonable(params), sort_keys=True),
            attempts=restored.attempts if restored else None,
            output_hashes=restored.output_hashes if restored else None,
        )  # fmt: skip
        self.gates = Gates(
            self, dict(restored.decisions) if restored else {}, set(restored.requested) if restored else set()
        )
        self.scheduler = Scheduler(self)
        self._task: asyncio.Task[None] | None = None
        self._children: set[RunExecution] = set()
        self._finished = asyncio.Event()
        #: refused here, in the caller, before any step starts: params that cannot be recorded
        self._recorded_params = record_params(params, flow=plan.name) if restored is None else None
        started_at = restored.started_at if restored is not None and restored.started_at else clock.time()
        self.trigger = restored.trigger if restored is not None and restored.trigger else trigger
        #: the ``run`` template variable and step parameter (DESIGN §2)
        self._run_info = {
            "id": run_id, "flow": plan.name, "started_at": datetime.fromtimestamp(started_at, UTC).isoformat(),
            "trigger": self.trigger, "params": params,
        }  # fmt: skip
        #: when this process began the run: control commands posted before it are another owner's
        self.began_at = clock.time()

    @property
    def attempts(self) -> dict[str, int]:
        return self.journal.attempts

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start on the engine loop (called there)."""
        self._task = asyncio.get_running_loop().create_task(self._main(), name=f"flownb-run-{self.run_id}")

    async def _main(self) -> None:
        started = self.clock.perf()
        self._begin()
        try:
            async with self.runtime.run_slot(self.plan, self):
                self.set_status(RunStatus.RUNNING)
                # the run exists in the store before any of its steps can have effects
                await asyncio.wrap_future(self.recorder.commit())
                controls = asyncio.get_running_loop().create_task(self._follow_controls()) if self.depth == 0 else None
                try:
                    async with asyncio.timeout(self.timeout):
                        await self.scheduler.run()
                finally:
                    if controls is not None:
                        controls.cancel()
        except TimeoutError:
            self.error = RunFailed(
                f"run {self.run_id} of flow {self.plan.name!r} timed out after {self.timeout:g}s; "
                f"resume it with flow.resume({self.run_id!r}) or raise the run timeout"
            )
        except asyncio.CancelledError:
            self.error = RunCancelled(f"run {self.run_id} of flow {self.plan.name!r} was cancelled")
        except StoreError as exc:  # the store could not record the run: its own one-line reason
            self.error = exc
        except Exception as exc:  # noqa: BLE001  (an engine bug must end the run, recorded)
            self.error = RunFailed(f"run {self.run_id} failed inside flownb: {format_error(exc)}")
        finally:
            if self.error is not None:
                # a second cancel while cleaning up must not skip the rest of it
                with contextlib.suppress(asyncio.CancelledError):
                    await self._cancel_steps()
            await self._end(self.clock.perf() - started)

    def _begin(self) -> None:
        r = self.recorder
        if self.restored is None:
            params = self._recorded_params or RecordedParams({})
            payload: dict[str, Any] = dict(ev.run_started(
                flow=self.plan.name, params=params.shown, trigger=self.trigger, host=socket.gethostname(),
                pid=os.getpid(),
                notebook=self.runtime.notebook, flow_hash=self.graph.hash, parent_run_id=self.parent_run_id,
                steps=self.graph.shape(),
            ))  # fmt: skip
            if params.stored:  # committed with this event, in the same transaction
                payload["stored_params"] = [
                    {**r.output(PARAMS_STEP, n, e), **({"whole": True} if params.whole else {})}
                    for n, e in params.stored
                ]
            r.append(ev.EventName.RUN_STARTED, None, payload)
        else:
            r.emit(ev.EventName.RUN_STATUS, **ev.run_status(
                RunStatus.PENDING, resumed=True, pid=os.getpid(), host=socket.gethostname(),
            ))  # fmt: skip
            for name in self.outputs:
                if name in self.step_status:
                    self.step_status[name] = StepStatus(self.restored.statuses.get(name, StepStatus.SUCCEEDED))
            for name, status in self.restored.statuses.items():
                if name in self.step_status and status == StepStatus.SKIPPED:
                    self.step_status[name] = StepStatus.SKIPPED
        r.commit()

    async def _end(self, seconds: float) -> None:
        if self.error is None and self.recorder.write_error is not None:  # its records are incomplete
            self.error = RunFailed(
                f"run {self.run_id}: some of its records could not be written: {self.recorder.write_error}"
            )
        if self.error is None:
            status = RunStatus.SUCCEEDED
        elif isinstance(self.error, RunCancelled):
            status = RunStatus.CANCELLED
        else:
            status = RunStatus.FAILED
        self.status = status
        for name, st in self.step_status.items():
            if st in ev.STEP_ACTIVE:
                self.step_status[name] = StepStatus.CANCELLED
        self.gates.stop()
        self.journal.close_open(f"run {status}: it ended before this attempt did")
        self.recorder.emit(ev.EventName.RUN_ENDED, **ev.run_ended(
            status, error=str(self.error) if self.error else None, duration_ms=round(seconds * 1000, 3),
        ))  # fmt: skip
        commit = self.recorder.commit()
        try:
            await asyncio.wrap_future(commit)
        except Exception as exc:  # noqa: BLE001  (the run has ended; say why it was not recorded)
            self.error = self.error or exc
            if self.status == RunStatus.SUCCEEDED:  # an end not recorded is no success
                self.status = RunStatus.FAILED
        if self.recorder.write_error is not None and self.error is None:
            self.error = RunFailed(
                f"run {self.run_id}: some of its records could not be written to {self.store.path}: "
                f"{self.recorder.write_error}"
            )
            self.status = RunStatus.FAILED
        self._finished.set()
        self.runtime.forget(self)
        if not self.done.done():
            self.done.set_result(None)

    def cancel(self) -> None:
        """Cancel the run (on the engine loop); asking twice changes nothing."""
        if self._task is not None and not self._task.done() and not self._task.cancelling():
            self._task.cancel()

    async def wait_finished(self) -> None:
        await self._finished.wait()

    # -- control from anywhere (cancel, pause, resume) ---------------------------------------

    def pause(self) -> None:
        """No new step starts; running ones finish; the run shows ``paused`` (on the engine loop)."""
        if self.status in ev.RUN_ENDED or self.scheduler.paused:
            return
        self.scheduler.paused = True
        self.set_status(RunStatus.PAUSED)
        self.recorder.commit()

    def unpause(self) -> None:
        """Go on after :meth:`pause` (on the engine loop)."""
        if not self.scheduler.paused:
            return
        self.scheduler.paused = False
        self.set_status(RunStatus.WAITING if self.gates.pending() else RunStatus.RUNNING)
        self.recorder.commit()
        self.scheduler.pump()

    def control(self, command: str) -> None:
        """Apply ``cancel``, ``pause`` or ``resume`` (on the engine loop)."""
        if command == CANCEL:
            self.cancel()
        elif command == PAUSE:
            self.pause()
        elif command == RESUME:
            self.unpause()

    async def _follow_controls(self) -> None:
        """Commands other processes post for this run through the store (its inbox), in order."""
        applied = 0
        while True:
            await asyncio.sleep(CONTROL_POLL_SECONDS)  # real time: a test's manual clock must not spin it
            try:
                found = await asyncio.to_thread(self.store.decisions, self.run_id)
            except FlownbError:
                continue  # the store is busy with another process; ask again later
            commands = [d for d in found if d.step == CONTROL_STEP and d.ts.timestamp() >= self.began_at]
            for d in commands[applied:]:
                self.control(d.decision)
            applied = len(commands)

    async def _cancel_steps(self) -> None:
        for child in list(self._children):
            child.cancel()
        await self.scheduler.cancel_all()

    # -- what steps see ----------------------------------------------------------------

    def scope_for(self, spec: StepSpec) -> dict[str, Any]:
        """The template context: params, run, and each dependency's value.

        A step with several named outputs (a notebook cell) that has an output
        named like itself stands for that output in templates: ``{{ report }}``
        is the variable ``report`` of the cell ``report``, whatever else it defines.
        """
        scope: dict[str, Any] = {"params": self.params, "run": self._run_info}
        for dep in spec.deps:
            if dep in self.outputs:
                value = self.outputs[dep]
                names = self.graph.specs[dep].output_names if dep in self.graph.specs else None
                scope[dep] = value.get(dep) if names and dep in names and isinstance(value, dict) else value
            elif self.step_status.get(dep) in ev.STEP_ENDED:
                scope[dep] = None  # it ended without an output (a trigger rule let this step run)
        return scope

    def arguments(self, spec: StepSpec, scope: dict[str, Any]) -> dict[str, Any]:
        """A python step's arguments by parameter name: dependencies give their whole value; one
        that ended without an output gives None, or leaves the parameter its default."""
        outputs = self.outputs
        args: dict[str, Any] = {}
        for p in spec.inputs:
            if p in spec.deps and p in outputs:
                args[p] = outputs[p]
            elif p in spec.deps and self.step_status.get(p) in ev.STEP_ENDED:
                if p in spec.required:
                    args[p] = None
            elif p in scope:
                args[p] = scope[p]
        return args

    def new_log(self, step: str) -> StepLog:
        if not self.log_listeners:  # nobody listens: the plain log (this is every step's path)
            return StepLog(run_id=self.run_id, step=step)
        return new_log(self.run_id, step, [functools.partial(listener, self) for listener in self.log_listeners])

    def skip(self, name: str, reason: str) -> Outcome:
        """A step that will not run (its condition is false, or an upstream step failed)."""
        self.step_status[name] = StepStatus.SKIPPED
        self.journal.skipped(self.graph.specs[name], reason)
        return Outcome(StepStatus.SKIPPED, reason=reason)

    async def cached_output(self, spec: StepSpec, input_hash: str) -> Outcome | None:
        from flownb.engine.resume import find_cached

        hit = await asyncio.to_thread(find_cached, self.store, self.plan.name, spec, input_hash, self.run_id)
        if hit is None:
            return None
        source_run, value, output_hash = hit
        self.journal.cached(spec, input_hash, source_run, value[1], output_hash)
        return Outcome(StepStatus.CACHED, value[0])

    # -- approvals (see gates.py) ----------------------------------------------------------

    async def request_approval(self, ctx: StepContext, message: str, timeout: float | None) -> Decision:
        return await self.gates.request(ctx, message, timeout)

    def pending_approvals(self) -> list[str]:
        return self.gates.pending()

    def decide(self, decision: Decision, *, record: bool = True) -> None:
        """Deliver a decision (on the engine loop). The first decision wins."""
        self.gates.decide(decision, record=record)

    def set_status(self, status: RunStatus) -> None:
        if status != self.status:
            self.status = status
            self.recorder.emit(ev.EventName.RUN_STATUS, **ev.run_status(status))

    # -- sub-flows -----------------------------------------------------------------------

    async def run_child(self, ctx: StepContext, plan: RunPlan, params: dict[str, Any]) -> dict[str, Any]:
        if self.depth + 1 > MAX_DEPTH:
            raise StepFailed(
                f"step {ctx.step!r} of run {self.run_id}: sub-flows nest deeper than {MAX_DEPTH} levels; "
                "a flow may be running itself",
                step=ctx.step,
                run_id=self.run_id,
            )
        from flownb.engine.ownership import child_execution

        child = child_execution(self, ctx.step, plan, params)  # the child it started before, if any, resumed
        self._children.add(child)
        ctx.print(f"child run {child.run_id} of flow {plan.name!r}\n")
        ctx.metrics["child_run_id"] = child.run_id
        child.start()
        try:
            await asyncio.shield(child.wait_finished())
        except asyncio.CancelledError:
            child.cancel()
            await child.wait_finished()
            raise
        finally:
            self._children.discard(child)
        if child.status != RunStatus.SUCCEEDED:
            raise StepFailed(
                f"step {ctx.step!r} of run {self.run_id}: child run {child.run_id} {child.status}: {child.error}",
                step=ctx.step,
                run_id=self.run_id,
            )
        return dict(child.outputs)


def _jsonable(value: Any) -> Any:
    """A JSON form of the params for input hashes (the record is params.py's)."""
    try:
        return json.loads(json.dumps(value, default=repr))
    except (TypeError, ValueError):
        return repr(value)
