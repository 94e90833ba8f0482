"""Sub-flows: another Flow run as a child run; its outputs are this step's output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flownb.engine.context import StepContext
from flownb.errors import FlowDefinitionError
from flownb.model import templates
from flownb.steps.registry import register_kind

MAX_DEPTH = 5


class SubflowKind:
    name = "subflow"
    main_option = None
    required: tuple[str, ...] = ("flow",)
    optional: Mapping[str, Any] = {"params": None}

    def references(self, options: Mapping[str, Any]) -> set[str]:
        return templates.value_references(options.get("params") or {})

    def validate(self, step: str, options: dict[str, Any]) -> None:
        from flownb.model.flow import FlowDefinition

        if not isinstance(options.get("flow"), FlowDefinition):
            raise FlowDefinitionError(f"step {step!r}: flow must be a flownb.Flow")
        params = options.get("params")
        if params is not None and not isinstance(params, dict):
            raise FlowDefinitionError(f"step {step!r}: params must be a dict")

    async def execute(self, ctx: StepContext) -> Any:
        params = ctx.render(ctx.options.get("params") or {})
        return await ctx.run_child(ctx.options["flow"], params)


register_kind(SubflowKind())
