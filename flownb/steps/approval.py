"""Approval gates: the run waits until someone approves or rejects.

The request is committed before the run shows as waiting, so a decision can
come from the widget, ``Run.approve``, ``%flow approve``, the CLI or another
process, and a kernel restart loses nothing: resume asks again, or finds the
decision already made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flownb.engine.context import StepContext
from flownb.errors import FlowDefinitionError
from flownb.model import templates
from flownb.steps.registry import register_kind


class ApprovalKind:
    name = "approval"
    main_option = "message"
    required: tuple[str, ...] = ()
    optional: Mapping[str, Any] = {"message": "Approve {{ run.flow }}?", "approval_timeout": None}

    def references(self, options: Mapping[str, Any]) -> set[str]:
        return templates.value_references(options.get("message") or "")

    def validate(self, step: str, options: dict[str, Any]) -> None:
        t = options.get("approval_timeout")
        if t is not None and (not isinstance(t, int | float) or t <= 0):
            raise FlowDefinitionError(f"step {step!r}: approval_timeout must be a positive number of seconds")
        if not isinstance(options.get("message"), str):
            raise FlowDefinitionError(f"step {step!r}: message must be a string")

    async def execute(self, ctx: StepContext) -> Any:
        message = str(ctx.render(ctx.options["message"]))
        decision = await ctx.request_approval(message, ctx.options.get("approval_timeout"))
        return {"decision": decision.decision, "by": decision.decided_by, "comment": decision.comment}


register_kind(ApprovalKind())
