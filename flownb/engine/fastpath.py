"""The short way for the commonest step: a plain synchronous Python function.

A step with no condition, loop, cache, timeout, retries or fallback needs none
of the stepper's machinery. It is handed to the executor with a callback, and
settled when the executor drains its completions on the loop: no task, no
coroutine, no future per step. What is recorded is exactly what the stepper
records for the same step.
"""

from __future__ import annotations

import inspect
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flownb.engine.context import StepContext
from flownb.engine.stepper import Outcome, named_error
from flownb.model.spec import StepSpec

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution


def eligible(ex: RunExecution, spec: StepSpec) -> bool:
    fn = spec.fn
    return (
        spec.kind == "python"
        and fn is not None
        and not inspect.iscoroutinefunction(fn)
        and hasattr(ex.executor, "submit")
        and spec.when is None
        and spec.foreach is None
        and spec.repeat_until is None
        and spec.timeout is None
        and spec.fallback is None
        and not spec.cache
        and spec.retry.retries == 0
    )


def start(ex: RunExecution, name: str) -> None:
    spec = ex.graph.specs[name]
    scope = ex.scope_for(spec)
    input_hash = ex.input_hash(spec)
    ctx = StepContext(ex, spec, name, ex.next_attempt(name), scope, ex.new_log(name))
    started = ex.attempt_started(ctx, input_hash)
    t0 = time.perf_counter()
    kwargs = {p: scope[p] for p in spec.inputs if p in scope}
    ex.fast_running[name] = ctx

    def done(result: Any, error: BaseException | None) -> None:
        if ex.fast_running.pop(name, None) is None:
            return  # cancelled meanwhile; the attempt was recorded then
        if error is None and inspect.isawaitable(result):  # a cell with top-level await
            ex.fast_running[name] = ctx
            _await_then(ex, ctx, result, started, t0, input_hash)
            return
        finish(ex, ctx, started, t0, input_hash, result, error)

    ex.executor.submit(spec.fn, kwargs, ctx.log, done)  # type: ignore[attr-defined]


def finish(ex: RunExecution, ctx: StepContext, started: datetime, t0: float, input_hash: str,
           result: Any, error: BaseException | None) -> None:  # fmt: skip
    if error is None:
        try:
            encoded = ex.encode_output(ctx.spec, ctx.step, result)
        except Exception as exc:  # noqa: BLE001  (an unstorable output fails the step, recorded)
            error = exc
    if error is not None:
        ex.attempt_finished(ctx, started, t0, "failed", input_hash, error=error)
        ex.settle(ctx.step, Outcome("failed", error=named_error(ex, ctx.step, error)))
    else:
        ex.attempt_finished(ctx, started, t0, "succeeded", input_hash, encoded=encoded)
        ex.settle(ctx.step, Outcome("succeeded", result))


def cancel(ex: RunExecution, name: str) -> None:
    ctx = ex.fast_running.pop(name, None)
    if ctx is not None:
        ex.attempt_finished(ctx, datetime.now().astimezone(), time.perf_counter(), "cancelled", "",
                            reason="the run was cancelled")  # fmt: skip


def _await_then(ex: RunExecution, ctx: StepContext, awaitable: Any, started: datetime, t0: float,
                input_hash: str) -> None:  # fmt: skip
    import asyncio

    from flownb.engine.capture import CURRENT_LOG

    async def wait() -> None:
        CURRENT_LOG.set(ctx.log)
        try:
            result = await awaitable
        except Exception as exc:  # noqa: BLE001
            if ex.fast_running.pop(ctx.step, None) is not None:
                finish(ex, ctx, started, t0, input_hash, None, exc)
            return
        if ex.fast_running.pop(ctx.step, None) is not None:
            finish(ex, ctx, started, t0, input_hash, result, None)

    asyncio.get_running_loop().create_task(wait())
