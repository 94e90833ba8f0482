"""The short way for the commonest step: a plain synchronous Python function.

A step with no condition, loop, cache, timeout, retries or fallback needs none
of the stepper's machinery. It is handed to the executor with a callback: no
task, no coroutine, no future per step. The callback runs on the engine's loop,
or on the worker that ran the step when the loop sleeps (see executors/loop.py); there
it settles a success only, and hands a failure or an awaitable to the loop.
It records through the same journal functions as the stepper, so what is
recorded is what the stepper records for the same step (tests/engine/test_parity.py).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from flownb.engine.context import StepContext
from flownb.engine.stepper import Outcome, named_error
from flownb.store.events import Members, StepStatus

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution


class FastAttempt:
    """One attempt in flight on the short path; the executor calls it back with
    ``(result, error)`` on the engine's loop, or on a worker that acts for it."""

    __slots__ = ("ctx", "dropped", "ex", "input_hash", "started", "t0")

    def __init__(self, ex: RunExecution, ctx: StepContext, input_hash: str) -> None:
        self.ex = ex
        self.ctx = ctx
        self.input_hash = input_hash
        self.started = ex.journal.started(ctx, input_hash)
        self.t0 = ex.clock.perf()
        #: cancelled: a worker that has not started it yet leaves it alone
        self.dropped = False

    def __call__(self, result: Any, error: BaseException | None) -> None:
        ex = self.ex
        if ex.scheduler.fast_running.pop(self.ctx.step, None) is None:
            return  # cancelled meanwhile; the attempt was recorded then
        if error is None and result is not None and inspect.isawaitable(result):  # a cell with top-level await
            if not ex.loop.here():
                self._to_loop(result, error)
                return
            ex.scheduler.fast_running[self.ctx.step] = self
            _await_then(self, result)
            return
        self.finish(result, error)

    def _to_loop(self, result: Any, error: BaseException | None) -> None:
        """Leave this completion to the loop (called by a worker acting for it)."""
        self.ex.scheduler.fast_running[self.ctx.step] = self
        self.ex.loop.call_soon_threadsafe(self, result, error)

    def finish(self, result: Any, error: BaseException | None) -> None:
        ex, ctx = self.ex, self.ctx
        if error is None:
            try:
                encoded = ex.journal.encode(ctx.spec, ctx.step, result)
            except Exception as exc:  # noqa: BLE001  (unstorable values become volatile; an encoder bug still fails the step, recorded)
                error = exc
        if error is not None:
            if not ex.loop.here():  # a failure may stop the run, which cancels tasks: the loop's work
                self._to_loop(None, error)
                return
            ex.journal.finished(ctx, self.started, self.t0, StepStatus.FAILED, self.input_hash, error=error)
            ex.scheduler.settle(ctx.step, Outcome(StepStatus.FAILED, error=named_error(ex, ctx.step, error)))
        else:
            ex.journal.finished(ctx, self.started, self.t0, Members.SUCCEEDED, self.input_hash, encoded=encoded)
            ex.scheduler.succeeded(ctx.step, result)

    def cancel(self) -> None:
        self.dropped = True
        self.ex.journal.finished(
            self.ctx, self.started, self.t0, StepStatus.CANCELLED, self.input_hash, reason="the run was cancelled"
        )


def start(ex: RunExecution, name: str) -> None:
    spec = ex.graph.specs[name]
    scope = ex.scope_for(spec)
    ctx = StepContext(ex, spec, name, ex.journal.next_attempt(name), scope, ex.new_log(name))
    attempt = FastAttempt(ex, ctx, ex.journal.input_hash(spec))
    kwargs = ctx.arguments = ex.arguments(spec, scope) if spec.inputs else {}
    ex.scheduler.fast_running[name] = attempt
    ex.executor.submit(spec.fn, kwargs, ctx.log, attempt, ex.loop)  # type: ignore[attr-defined]


def cancel(ex: RunExecution, name: str) -> None:
    attempt = ex.scheduler.fast_running.pop(name, None)
    if attempt is not None:
        attempt.cancel()


def _await_then(attempt: FastAttempt, awaitable: Any) -> None:
    import asyncio

    from flownb.executors.capture import CURRENT_LOG

    ex, step = attempt.ex, attempt.ctx.step

    async def wait() -> None:
        CURRENT_LOG.set(attempt.ctx.log)
        try:
            result = await awaitable
        except Exception as exc:  # noqa: BLE001
            if ex.scheduler.fast_running.pop(step, None) is not None:
                attempt.finish(None, exc)
            return
        if ex.scheduler.fast_running.pop(step, None) is not None:
            attempt.finish(result, None)

    asyncio.get_running_loop().create_task(wait())
