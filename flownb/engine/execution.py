"""A run in progress: ready-queue scheduling on the engine's event loop.

Guarantees kept here:

* A step starts as soon as all of its dependencies are done, within the
  flow's ``max_concurrency``; levels are shown, never waited for.
* With ``durability="sync"`` a step's completion is committed before any of
  its dependents starts; completions that arrive together share a commit.
* A step whose success was committed is never executed again for this run
  (resume restores it from the store instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import time
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flownb.engine import fastpath
from flownb.engine.capture import StepLog
from flownb.engine.context import StepContext
from flownb.engine.gates import Gates
from flownb.engine.params import PARAMS_STEP, RecordedParams, record_params
from flownb.engine.recorder import Recorder
from flownb.engine.stepper import Outcome, format_error, run_step
from flownb.errors import (
    RunCancelled,
    RunFailed,
    StepFailed,
)  # fmt: skip
from flownb.executors import resolve_executor
from flownb.model.hashing import digest
from flownb.model.spec import StepSpec
from flownb.store.base import Decision, Store
from flownb.store.codecs import Encoded, encode

if TYPE_CHECKING:
    from flownb.engine.resume import Restored
    from flownb.engine.runtime import Runtime
    from flownb.model.flow import Flow, Graph

MAX_DEPTH = 5
DONE_STEP = frozenset({"succeeded", "cached", "skipped"})


class RunExecution:
    def __init__(
        self, runtime: Runtime, flow: Flow, graph: Graph, params: dict[str, Any], store: Store,
        run_id: str, *, timeout: float | None = None, parent_run_id: str | None = None,
        depth: int = 0, restored: Restored | None = None,
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.flow = flow
        self.graph = graph
        self.params = params
        self.store = store
        self.run_id = run_id
        self.timeout = timeout
        self.parent_run_id = parent_run_id
        self.depth = depth
        self.restored = restored
        #: the engine's loop; a worker may act in its stead (see loop.py): plain steps'
        #: completions are settled by whoever holds ``loop.lock``
        self.loop = runtime.loop
        self.recorder = Recorder(store, run_id, runtime.loop, restored.next_seq if restored else 1)
        self.recorder.secrets.add_params(params)  # scrubbed by value from all the run records
        self.executor = resolve_executor(flow.executor)
        self.status = "pending"
        self.error: BaseException | None = None
        self.outputs: dict[str, Any] = dict(restored.outputs) if restored else {}
        self.output_hashes: dict[str, str] = dict(restored.output_hashes) if restored else {}
        self.restored_items: dict[str, Any] = dict(restored.items) if restored else {}
        self.step_status: dict[str, str] = {n: "pending" for n in graph.deps}
        self.attempts: dict[str, int] = dict(restored.attempts) if restored else {}
        self.done: Future[None] = Future()
        self.log_listeners: list[Any] = []
        #: called with (execution, step, value) once a step's output is available
        self.output_listeners: list[Any] = []
        self.gates = Gates(
            self, dict(restored.decisions) if restored else {}, set(restored.requested) if restored else set()
        )
        self._task: asyncio.Task[None] | None = None
        self._step_tasks: dict[str, asyncio.Task[Outcome]] = {}
        #: plain synchronous steps in flight by the fast path (see fastpath.py)
        self.fast_running: dict[str, fastpath.FastAttempt] = {}
        #: the executor takes plain synchronous steps with a callback (see fastpath.py)
        self._submits = hasattr(self.executor, "submit")
        self._children: set[RunExecution] = set()
        self._finished = asyncio.Event()
        self._params_json = json.dumps(_jsonable(params), sort_keys=True)
        #: refused here, in the caller, before any step starts: params that cannot be recorded
        self._recorded_params = record_params(params, flow=flow.name) if restored is None else None
        self._run_info = {"id": run_id, "flow": flow.name}
        #: input hashes of steps without dependencies, by code hash (they hash no outputs)
        self._root_hashes: dict[str, str] = {}
        self._foreach_t0: dict[str, tuple[float, float]] = {}

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start on the engine loop (called there)."""
        self._task = asyncio.get_running_loop().create_task(self._main(), name=f"flownb-run-{self.run_id}")

    async def _main(self) -> None:
        started = time.perf_counter()
        self._begin()
        try:
            async with self.runtime.run_slot(self.flow, self):
                self.set_status("running")
                # the run exists in the store before any of its steps can have effects
                await asyncio.wrap_future(self.recorder.commit())
                async with asyncio.timeout(self.timeout):
                    await self._schedule()
        except TimeoutError:
            self.error = RunFailed(
                f"run {self.run_id} of flow {self.flow.name!r} timed out after {self.timeout:g}s; "
                f"resume it with flow.resume({self.run_id!r}) or raise the run timeout"
            )
        except asyncio.CancelledError:
            self.error = RunCancelled(f"run {self.run_id} of flow {self.flow.name!r} was cancelled")
        except Exception as exc:  # noqa: BLE001  (an engine bug must end the run, recorded)
            self.error = RunFailed(f"run {self.run_id} failed inside flownb: {format_error(exc)}")
        finally:
            if self.error is not None:
                # a second cancel while cleaning up must not skip the rest of it
                with contextlib.suppress(asyncio.CancelledError):
                    await self._cancel_steps()
            await self._end(time.perf_counter() - started)

    def _begin(self) -> None:
        r = self.recorder
        if self.restored is None:
            params = self._recorded_params or RecordedParams({})
            payload = {
                "flow": self.flow.name, "status": "pending", "params": params.shown,
                "host": socket.gethostname(), "pid": os.getpid(), "notebook": self.runtime.notebook,
                "flow_hash": self.graph.hash, "parent_run_id": self.parent_run_id,
                "steps": self.graph.shape(),
            }  # fmt: skip
            if params.stored:  # committed with this event, in the same transaction
                payload["stored_params"] = [r.output(PARAMS_STEP, n, e) for n, e in params.stored]
            r.append("run_started", None, payload)
        else:
            r.emit("run_status", status="pending", resumed=True, pid=os.getpid(), host=socket.gethostname())
            for name in self.outputs:
                if name in self.step_status:
                    self.step_status[name] = self.restored.statuses.get(name, "succeeded")
            for name, status in self.restored.statuses.items():
                if name in self.step_status and status == "skipped":
                    self.step_status[name] = "skipped"
        r.commit()

    async def _end(self, seconds: float) -> None:
        if self.error is None:
            status = "succeeded"
        elif isinstance(self.error, RunCancelled):
            status = "cancelled"
        else:
            status = "failed"
        self.status = status
        for name, st in self.step_status.items():
            if st in ("pending", "running", "retrying", "waiting"):
                self.step_status[name] = "cancelled"
        self.gates.stop()
        self.recorder.emit(
            "run_ended", status=status, error=str(self.error) if self.error else None,
            duration_ms=round(seconds * 1000, 3),
        )  # fmt: skip
        commit = self.recorder.commit()
        try:
            await asyncio.wrap_future(commit)
        except Exception as exc:  # noqa: BLE001  (the run has ended; say why it was not recorded)
            self.error = self.error or exc
        if self.recorder.write_error is not None and self.error is None:
            self.error = RunFailed(
                f"run {self.run_id}: some of its records could not be written to {self.store.path}: "
                f"{self.recorder.write_error}"
            )
            self.status = "failed"
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

    # -- scheduling ---------------------------------------------------------------

    async def _schedule(self) -> None:
        deps = self.graph.deps
        done = {n for n, s in self.step_status.items() if s in DONE_STEP}
        self._waiting_on = {n: len(d - done) for n, d in deps.items() if n not in done}
        self._ready: deque[str] = deque(sorted(n for n, c in self._waiting_on.items() if c == 0))
        self._running = 0
        self._open = len(self._waiting_on)
        self._stopping = False
        self._all_done = asyncio.Event()
        if self._open == 0:
            return
        self._pump()
        await self._all_done.wait()
        failed = [n for n, s in self.step_status.items() if s == "failed"]
        if failed and self.error is None:
            self.error = RunFailed(f"run {self.run_id} of flow {self.flow.name!r}: step(s) {', '.join(failed)} failed")

    def _pump(self) -> None:
        limit = self.flow.max_concurrency
        while self._ready and not self._stopping:
            name = self._ready[0]
            spec = self.graph.specs[name]
            gate = spec.kind == "approval"  # waiting holds no slot
            if not gate and self._running >= limit:
                return
            fast = self._submits and spec.plain
            if not fast and not self.loop.here():  # a worker settling a step starts plain steps only
                self.loop.soon(self._pump)
                return
            self._ready.popleft()
            if not gate:
                self._running += 1
            self.step_status[name] = "running"
            if fast:
                fastpath.start(self, name)
                continue
            task = asyncio.get_running_loop().create_task(run_step(self, name))
            self._step_tasks[name] = task
            task.add_done_callback(functools.partial(self._step_done, name, gate=gate))

    def _step_done(self, name: str, task: asyncio.Task[Outcome], *, gate: bool) -> None:
        self._step_tasks.pop(name, None)
        if task.cancelled():
            if not gate:
                self._running -= 1
            self.step_status[name] = "cancelled"
            self._close(name)
            return
        exc = task.exception()
        self.settle(name, Outcome("failed", error=exc) if exc is not None else task.result(), gate=gate)

    def settle(self, name: str, outcome: Outcome, *, gate: bool = False) -> None:
        """A step is over: record it and release its dependents (or stop the run)."""
        if outcome.status in ("succeeded", "cached"):
            self.succeeded(name, outcome.value, outcome.status, gate=gate)
            return
        if not gate:
            self._running -= 1
        self.step_status[name] = outcome.status
        if outcome.status == "failed":
            spec = self.graph.specs[name]
            if spec.on_failure == "stop":
                self.error = outcome.error
                self._stop()
            else:
                self._skip_downstream(name, f"upstream step {name!r} failed")
        elif outcome.status == "skipped":
            self._skip_downstream(name, f"upstream step {name!r} was skipped")
        self.recorder.commit(urgent=False)
        self._close(name)

    def succeeded(self, name: str, value: Any, status: str = "succeeded", *, gate: bool = False) -> None:
        """A step succeeded (its end is recorded): release its dependents once committed."""
        if not gate:
            self._running -= 1
        self.outputs[name] = value
        self.step_status[name] = status
        for listener in self.output_listeners:
            listener(self, name, value)
        children = self.graph.dependents.get(name)
        if not children:  # nobody waits for this commit: it may share a later one
            self.recorder.commit(urgent=False, starts=False)
            self._close(name)
            return
        sync = self.flow.durability == "sync"
        # a worker settling the only step in flight commits it itself: nothing could join
        here = sync and self._running == 0 and not self.loop.here()
        commit = self.recorder.commit(urgent=sync, starts=False, here=here)
        if sync and not commit.done():
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
            self.step_status[name] = "failed"
            self.error = StepFailed(
                f"step {name!r} of run {self.run_id} succeeded but could not be recorded: {commit.exception()}",
                step=name, run_id=self.run_id,
            )  # fmt: skip
            self._stop()
            self._close(name)
            return
        for child in self.graph.dependents.get(name, ()):
            if child in self._waiting_on:
                self._waiting_on[child] -= 1
                if self._waiting_on[child] == 0 and self.step_status[child] == "pending":
                    self._ready.append(child)
        self._close(name)

    def _close(self, name: str) -> None:
        self._open -= 1
        self._pump()
        if self._open <= 0 or (self._stopping and not self._step_tasks and not self.fast_running):
            self.loop.soon(self._all_done.set)

    def _stop(self) -> None:
        """Fail fast: no new steps; running ones are cancelled."""
        self._stopping = True
        self._cancel_fast()
        for task in list(self._step_tasks.values()):
            task.cancel()
        if not self._step_tasks:
            self._all_done.set()

    def _cancel_fast(self) -> None:
        for name in list(self.fast_running):
            fastpath.cancel(self, name)
            self._running -= 1
            self.step_status[name] = "cancelled"
            self._open -= 1

    def _skip_downstream(self, root: str, reason: str) -> None:
        from flownb.model.dag import downstream

        for child in sorted(downstream(self.graph.deps, [root])):
            if self.step_status.get(child) == "pending":
                self.skip(child, reason)
                self._open -= 1
                self._waiting_on.pop(child, None)

    async def _cancel_steps(self) -> None:
        if hasattr(self, "_open"):
            self._cancel_fast()
        for child in list(self._children):
            child.cancel()
        tasks = list(self._step_tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- what the stepper records ------------------------------------------------

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
        return scope

    def arguments(self, spec: StepSpec, scope: dict[str, Any]) -> dict[str, Any]:
        """A python step's arguments by parameter name: dependencies give their whole value."""
        outputs = self.outputs
        return {
            p: outputs[p] if p in spec.deps and p in outputs else scope[p]
            for p in spec.inputs if p in scope or p in outputs
        }  # fmt: skip

    def input_hash(self, spec: StepSpec) -> str:
        if not spec.deps:
            known = self._root_hashes.get(spec.code_hash)
            if known is None:
                known = self._root_hashes[spec.code_hash] = digest(spec.code_hash, self._params_json)
            return known
        upstream = [f"{d}={self.output_hashes.get(d, '')}" for d in sorted(spec.deps)]
        return digest(spec.code_hash, self._params_json, *upstream)

    def next_attempt(self, step: str) -> int:
        return self.attempts.get(step, 0) + 1

    def new_log(self, step: str) -> StepLog:
        if not self.log_listeners:
            return StepLog(run_id=self.run_id, step=step)
        listeners = list(self.log_listeners)

        def on_write(stream: str, text: Any) -> None:
            for listener in listeners:
                listener(self, step, stream, text)

        return StepLog(on_write, run_id=self.run_id, step=step)

    def attempt_started(self, ctx: StepContext, input_hash: str) -> float:
        """Record an attempt's start; returns when it started (seconds since the epoch)."""
        self.attempts[ctx.step] = ctx.attempt
        if ctx.step in self.step_status:
            self.step_status[ctx.step] = "running"
        now = time.time()
        payload = {
            "attempt": ctx.attempt, "kind": ctx.spec.kind, "status": "running",
            "level": self.graph.levels.get(ctx.spec.name), "input_hash": input_hash,
        }  # fmt: skip
        self.recorder.append("step_started", ctx.step, payload, at=now)
        return now

    def attempt_finished(
        self, ctx: StepContext, started: float, t0: float, status: str, input_hash: str, *,
        error: BaseException | None = None, encoded: list[tuple[str, Encoded]] | Encoded | None = None,
        reason: str | None = None,
    ) -> None:  # fmt: skip
        payload: dict[str, Any] = {
            "attempt": ctx.attempt, "kind": ctx.spec.kind, "status": status,
            "level": self.graph.levels.get(ctx.spec.name), "started_at": started,
            "duration_ms": round((time.perf_counter() - t0) * 1000, 3), "input_hash": input_hash,
            "code_hash": ctx.spec.code_hash,
        }  # fmt: skip
        if ctx.log.written:
            out = ctx.log.text("stdout")
            err = ctx.log.text("stderr")
            if out:
                payload["stdout"] = out
            if err:
                payload["stderr"] = err
            shown = ctx.log.displays
            if shown:
                payload["displays"] = shown
        if error is not None:
            payload["error_type"] = type(error).__name__
            payload["error"] = str(error) or type(error).__name__
            payload["traceback"] = format_error(error)
        if reason:
            payload["reason"] = reason
        if ctx.metrics:
            payload.update(ctx.metrics)
        if ctx.recorded_inputs is not None:
            payload["inputs"] = ctx.recorded_inputs
        # the outputs travel in the step_finished event: one row a step, not two
        if isinstance(encoded, list):
            payload["outputs"] = [self.recorder.output(ctx.step, name, enc) for name, enc in encoded]
            hashes = [enc.hash for _, enc in encoded]
            payload["output_hash"] = hashes[0] if len(hashes) == 1 else digest(*hashes)
        elif encoded is not None:
            payload["outputs"] = [self.recorder.output(ctx.step, ctx.step, encoded)]
            payload["output_hash"] = encoded.hash
        if encoded is not None and ctx.step == ctx.spec.name:
            self.output_hashes[ctx.spec.name] = payload["output_hash"]
        self.recorder.append("step_finished", ctx.step, payload)

    def step_retrying(self, step: str, attempt: int, delay: float, exc: BaseException) -> None:
        if step in self.step_status:
            self.step_status[step] = "retrying"
        self.recorder.emit("step_retrying", step, attempt=attempt, delay_s=round(delay, 4), error=str(exc))
        self.recorder.commit(urgent=False)

    def skip(self, name: str, reason: str) -> Outcome:
        self.step_status[name] = "skipped"
        spec = self.graph.specs[name]
        self.recorder.emit(
            "step_finished", name, attempt=self.next_attempt(name), kind=spec.kind, status="skipped",
            level=self.graph.levels.get(name), reason=reason, code_hash=spec.code_hash,
        )  # fmt: skip
        return Outcome("skipped", reason=reason)

    def foreach_started(self, spec: StepSpec, count: int) -> None:
        attempt = self.next_attempt(spec.name)
        self.attempts[spec.name] = attempt
        self._foreach_t0[spec.name] = (time.time(), time.perf_counter())
        self.recorder.emit(
            "step_started", spec.name, attempt=attempt, kind=spec.kind, status="running",
            level=self.graph.levels.get(spec.name), items=count,
        )  # fmt: skip
        self.recorder.commit()

    def foreach_finished(self, spec: StepSpec, value: list[Any], input_hash: str) -> None:
        started, t0 = self._foreach_t0.pop(spec.name)
        ctx = StepContext(self, spec, spec.name, self.attempts[spec.name], {}, StepLog())
        self.attempt_finished(ctx, started, t0, "succeeded", input_hash, encoded=encode(value, step=spec.name))

    def item_done(self, spec: StepSpec, step: str) -> None:
        self.recorder.commit(urgent=False)  # each item is checkpointed as it finishes

    def fallback_used(self, spec: StepSpec, fallback_step: str, error: BaseException, value: Any) -> None:
        """The step succeeded through its fallback: its output is the fallback's, recorded
        under the step's own name so that resume restores it."""
        encoded = encode(value, step=spec.name)
        self.output_hashes[spec.name] = encoded.hash
        self.recorder.emit(
            "step_finished", spec.name, attempt=self.next_attempt(spec.name), kind=spec.kind,
            status="succeeded", level=self.graph.levels.get(spec.name),
            reason=f"output from fallback {fallback_step!r}", error_type=type(error).__name__,
            error=str(error), code_hash=spec.code_hash, output_hash=encoded.hash,
            outputs=[self.recorder.output(spec.name, spec.name, encoded)],
        )  # fmt: skip

    def encode_output(self, spec: StepSpec, step: str, value: Any) -> list[tuple[str, Encoded]] | Encoded:
        if spec.output_names and step == spec.name and isinstance(value, dict):
            return [(n, encode(value[n], step=f"{step}.{n}")) for n in spec.output_names if n in value]
        return encode(value, step=step)

    async def cached_output(self, spec: StepSpec, input_hash: str) -> Outcome | None:
        from flownb.engine.resume import find_cached

        hit = await asyncio.to_thread(find_cached, self.store, self.flow.name, spec, input_hash, self.run_id)
        if hit is None:
            return None
        source_run, value, output_hash = hit
        self.output_hashes[spec.name] = output_hash
        attempt = self.next_attempt(spec.name)
        self.attempts[spec.name] = attempt
        self.recorder.emit(
            "step_finished", spec.name, attempt=attempt, kind=spec.kind, status="cached", cached=True,
            level=self.graph.levels.get(spec.name), input_hash=input_hash, output_hash=output_hash,
            reason=f"cached from run {source_run}", code_hash=spec.code_hash, duration_ms=0,
            outputs=value[1],
        )  # fmt: skip
        return Outcome("cached", value[0])

    # -- approvals (see gates.py) ----------------------------------------------------------

    async def request_approval(self, ctx: StepContext, message: str, timeout: float | None) -> Decision:
        return await self.gates.request(ctx, message, timeout)

    def pending_approvals(self) -> list[str]:
        return self.gates.pending()

    def decide(self, decision: Decision, *, record: bool = True) -> None:
        """Deliver a decision (on the engine loop). The first decision wins."""
        self.gates.decide(decision, record=record)

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.recorder.emit("run_status", status=status)

    # -- sub-flows -----------------------------------------------------------------------

    async def run_child(self, ctx: StepContext, flow: Flow, params: dict[str, Any]) -> dict[str, Any]:
        if self.depth + 1 > MAX_DEPTH:
            raise StepFailed(
                f"step {ctx.step!r} of run {self.run_id}: sub-flows nest deeper than {MAX_DEPTH} levels; "
                "a flow may be running itself",
                step=ctx.step,
                run_id=self.run_id,
            )
        child = self.runtime.create(flow, params, parent=self)
        self._children.add(child)
        ctx.print(f"child run {child.run_id} of flow {flow.name!r}\n")
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
        if child.status != "succeeded":
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
