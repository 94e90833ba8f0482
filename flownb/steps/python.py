"""Python steps: sync functions on the flow's executor, async ones on the loop."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flownb.engine.context import StepContext
from flownb.executors.capture import CURRENT_LOG
from flownb.steps.registry import register_kind


def arguments(ctx: StepContext) -> dict[str, Any]:
    """The function's arguments by parameter name; absent optional ones keep their defaults."""
    return ctx.execution.arguments(ctx.spec, ctx.scope)


class PythonKind:
    name = "python"
    main_option = None
    required: tuple[str, ...] = ()
    optional: Mapping[str, Any] = {}

    def references(self, options: Mapping[str, Any]) -> set[str]:
        return set()

    def validate(self, step: str, options: dict[str, Any]) -> None:
        return None

    async def execute(self, ctx: StepContext) -> Any:
        fn = ctx.spec.fn
        assert fn is not None
        kwargs = ctx.arguments = arguments(ctx)
        if inspect.iscoroutinefunction(fn):
            # the attempt runs in its own task, so this setting stays in it
            CURRENT_LOG.set(ctx.log)
            return await fn(**kwargs)
        result = await ctx.call(fn, kwargs)
        if inspect.isawaitable(result):  # a cell step with top-level await returns a coroutine
            CURRENT_LOG.set(ctx.log)
            return await result
        return result


register_kind(PythonKind())
