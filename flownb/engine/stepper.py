"""One step, start to finish: condition, cache, for-each, loop, retries, fallback.

Invariant kept here: a step's success is recorded (and, with sync durability,
committed by the caller) only after its output was encoded for the store, so
that a committed success can always be restored and is never run again.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flownb.engine.context import StepContext
from flownb.errors import ApprovalRejected, FlownbError, StepFailed, StepTimeout, TemplateError
from flownb.executors.capture import StepLog
from flownb.model import templates
from flownb.model.hashing import digest
from flownb.model.spec import StepSpec
from flownb.store.events import StepStatus

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution


@dataclass
class Outcome:
    status: StepStatus  # succeeded, cached, failed, skipped, cancelled
    value: Any = None
    error: BaseException | None = None
    reason: str | None = None


class _AttemptFailed(Exception):
    """All attempts of a step (or item) failed; carries the last error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def run_step(ex: RunExecution, name: str) -> Outcome:
    spec = ex.graph.specs[name]
    scope = ex.scope_for(spec)
    if spec.when is not None:
        try:
            go = templates.evaluate(spec.when, scope)
        except TemplateError as exc:
            return _fail(ex, spec, exc)
        if not go:
            return ex.skip(name, f"condition when={spec.when!r} is false")
    input_hash = ex.journal.input_hash(spec)
    if spec.cache:
        hit = await ex.cached_output(spec, input_hash)
        if hit is not None:
            return hit
    try:
        if spec.foreach is not None:
            try:
                value = await _foreach(ex, spec, scope, input_hash)
            except (_AttemptFailed, asyncio.CancelledError) as exc:
                # the step's own record ends with its items: never a row left running
                error = exc.error if isinstance(exc, _AttemptFailed) else None
                ex.journal.foreach_ended(spec, input_hash, error)
                raise
            ctx = StepContext(ex, spec, spec.name, ex.journal.attempts[spec.name], {}, StepLog())
            ex.journal.foreach_finished(ctx, value, input_hash)
        else:
            value = await _attempts(ex, spec, name, scope, input_hash)
    except _AttemptFailed as failed:
        if spec.fallback is not None:
            return await _fallback(ex, spec, scope, failed.error, input_hash)
        return Outcome(StepStatus.FAILED, error=named_error(ex, spec.name, failed.error))
    return Outcome(StepStatus.SUCCEEDED, value)


async def _attempts(
    ex: RunExecution, spec: StepSpec, step: str, scope: dict[str, Any], input_hash: str
) -> Any:
    """Attempts of one step or item: retries with backoff, and repeat_until."""
    kind = spec.handler
    journal = ex.journal
    attempt = journal.next_attempt(step)
    tries = 0
    iterations = 0
    while True:
        tries += 1
        log = ex.new_log(step)
        ctx = StepContext(ex, spec, step, attempt, scope, log, spec.timeout)
        if step in ex.step_status:
            ex.step_status[step] = StepStatus.RUNNING
        started = journal.started(ctx, input_hash)
        t0 = ex.clock.perf()
        try:
            if spec.timeout is not None:
                try:
                    value = await asyncio.wait_for(kind.execute(ctx), spec.timeout)
                except TimeoutError:
                    raise StepTimeout(
                        f"step {step!r} of run {ex.run_id} timed out after {spec.timeout:g}s "
                        f"(attempt {attempt}); raise timeout= or make the step faster",
                        step=step, run_id=ex.run_id,
                    ) from None
            else:
                value = await kind.execute(ctx)
            encoded = journal.encode(spec, step, value)
        except asyncio.CancelledError:
            journal.finished(ctx, started, t0, StepStatus.CANCELLED, input_hash, reason="the run was cancelled")
            raise
        except Exception as exc:  # noqa: BLE001  (a step's failure is data, recorded below)
            journal.finished(ctx, started, t0, StepStatus.FAILED, input_hash, error=exc)
            if tries <= spec.retry.retries and _retryable(spec, exc):
                # a kind may ask for a longer wait (HTTP Retry-After)
                delay = max(spec.retry.delay(tries), float(getattr(exc, "retry_after", 0) or 0))
                if step in ex.step_status:
                    ex.step_status[step] = StepStatus.RETRYING
                journal.retrying(step, attempt, delay, exc)
                await ex.clock.sleep(delay)
                attempt += 1
                continue
            raise _AttemptFailed(exc) from None
        journal.finished(ctx, started, t0, StepStatus.SUCCEEDED, input_hash, encoded=encoded)
        if spec.repeat_until is None:
            return value
        iterations += 1
        try:
            done = templates.evaluate(spec.repeat_until, {**scope, spec.name: value})
        except TemplateError as exc:
            raise _AttemptFailed(exc) from None
        if done:
            return value
        if iterations >= spec.max_iterations:
            raise _AttemptFailed(
                StepFailed(
                    f"step {step!r} of run {ex.run_id}: repeat_until={spec.repeat_until!r} still "
                    f"false after max_iterations={spec.max_iterations}",
                    step=step, run_id=ex.run_id,
                )
            )
        attempt += 1
        tries = 0


def _retryable(spec: StepSpec, exc: BaseException) -> bool:
    if isinstance(exc, ApprovalRejected | TemplateError):
        return False
    if getattr(exc, "retryable", True) is False:  # a kind knows a 404 will not heal
        return False
    return isinstance(exc, spec.retry.retry_on)


async def _foreach(ex: RunExecution, spec: StepSpec, scope: dict[str, Any], input_hash: str) -> list[Any]:
    """One checkpointed attempt series per item; the output is a list in item order."""
    assert spec.foreach is not None
    try:
        items = templates.evaluate(spec.foreach, scope)
        items = list(items)
    except TemplateError as exc:
        raise _AttemptFailed(exc) from None
    except TypeError:
        hint = " (a method: write params['items'] for a key that is also a dict method)" if callable(
            templates.evaluate(spec.foreach, scope)
        ) else ""
        raise _AttemptFailed(
            StepFailed(f"step {spec.name!r}: foreach={spec.foreach!r} is not a list{hint}", step=spec.name)
        ) from None
    ex.journal.foreach_started(spec, len(items))
    limit = asyncio.Semaphore(spec.concurrency or ex.plan.max_concurrency)
    results: list[Any] = [None] * len(items)
    allowed = spec.max_failures if isinstance(spec.max_failures, int) else math.floor(spec.max_failures * len(items))
    failed: list[int] = []

    async def one(index: int, item: Any) -> None:
        step = f"{spec.name}[{index}]"
        if step in ex.restored_items:
            results[index] = ex.restored_items[step]
            return
        async with limit:
            item_scope = {**scope, "item": item, "index": index}
            item_hash = digest(input_hash, _json(item))
            try:
                results[index] = await _attempts(ex, spec, step, item_scope, item_hash)
            except _AttemptFailed as exc:
                failed.append(index)  # its attempts are recorded; the output list holds None for it
                if len(failed) > allowed:
                    raise _AttemptFailed(StepFailed(
                        f"step {spec.name!r} of run {ex.run_id}: {len(failed)} of {len(items)} items failed, "
                        f"more than max_failures={spec.max_failures!r} allows ({allowed}); item {index}: "
                        f"{exc.error}", step=spec.name, run_id=ex.run_id,
                    )) from exc  # fmt: skip
        ex.journal.item_done()

    tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if failed:
        ex.journal.note(spec.name, f"{len(failed)} of {len(items)} items failed (max_failures={spec.max_failures!r})")
    return results


async def _fallback(
    ex: RunExecution, spec: StepSpec, scope: dict[str, Any], error: BaseException, input_hash: str
) -> Outcome:
    fb = spec.fallback
    if isinstance(fb, str):
        fb_spec = ex.graph.specs[fb]
        step = fb
    else:
        from flownb.model.flow import parameters

        inputs, _ = parameters(f"fallback of step {spec.name!r}", fb)  # type: ignore[arg-type]
        assert ex.plan.kinds is not None, "a plan from FlowDefinition.plan() knows its kinds"
        fb_spec = replace(spec, name=f"{spec.name}.fallback", kind="python", fn=fb, inputs=inputs,
                          fallback=None, foreach=None, repeat_until=None, when=None,
                          handler=ex.plan.kinds("python", spec.name))  # fmt: skip
        step = fb_spec.name
    try:
        value = await _attempts(ex, fb_spec, step, {**scope, "error": error}, input_hash)
    except _AttemptFailed as failed:
        return Outcome(StepStatus.FAILED, error=named_error(ex, spec.name, failed.error))
    try:
        ex.journal.fallback_used(spec, step, error, value)
    except Exception as exc:  # noqa: BLE001  (unstorable values become volatile; an encoder bug fails the step)
        return Outcome(StepStatus.FAILED, error=named_error(ex, spec.name, exc))
    return Outcome(StepStatus.SUCCEEDED, value, reason=f"output from fallback {step!r}")


def _fail(ex: RunExecution, spec: StepSpec, exc: BaseException) -> Outcome:
    ex.journal.failed_before_running(spec, exc)
    return Outcome(StepStatus.FAILED, error=named_error(ex, spec.name, exc))


def named_error(ex: RunExecution, step: str, exc: BaseException) -> BaseException:
    """The error a run reports: a FlownbError names step and run; others are wrapped."""
    if isinstance(exc, StepFailed):
        exc.step = exc.step or step
        exc.run_id = exc.run_id or ex.run_id
        return exc
    if isinstance(exc, FlownbError):
        wrapped: StepFailed = StepFailed(f"step {step!r} of run {ex.run_id} failed: {exc}", step=step, run_id=ex.run_id)
    else:
        wrapped = StepFailed(
            f"step {step!r} of run {ex.run_id} failed: {type(exc).__name__}: {exc}",
            step=step, run_id=ex.run_id,
        )
    wrapped.__cause__ = exc
    return wrapped


def _json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)
