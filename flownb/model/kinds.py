"""The step-kind protocol, and checking a step's options against its kind.

The registry lives in :mod:`flownb.steps.registry`; a flow is given the lookup
(``KindLookup``) by the public ``flownb.Flow``, so the model imports no kinds.
The model asks a kind to validate its options and to name the templates'
references (dependencies); the engine asks it to execute an attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from flownb.errors import FlowDefinitionError


class StepKind(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def main_option(self) -> str | None:
        """The option a notebook cell body fills (``%%step x --kind shell``)."""
        ...

    @property
    def required(self) -> tuple[str, ...]:
        """Options that must be given."""
        ...

    @property
    def optional(self) -> Mapping[str, Any]:
        """Options that may be given, with their defaults."""
        ...

    def references(self, options: Mapping[str, Any]) -> set[str]:
        """Names that the kind's templates read (step outputs become dependencies)."""
        ...

    def validate(self, step: str, options: dict[str, Any]) -> None:
        """Raise FlowDefinitionError for a bad option value."""
        ...

    async def execute(self, ctx: Any) -> Any:
        """Run one attempt (``ctx``: the engine's StepContext) and return the step's output."""
        ...


#: ``lookup(kind_name, step_name) -> StepKind``, raising FlowDefinitionError for an unknown kind
KindLookup = Callable[[str, "str | None"], StepKind]


def check_options(kind: StepKind, step: str, options: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and refuse unknown or missing options, naming the step."""
    allowed = set(kind.required) | set(kind.optional)
    unknown = sorted(set(options) - allowed)
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(u, sorted(allowed), n=1) for u in unknown]
        said = ", ".join(
            f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in zip(unknown, hints, strict=True)
        )
        raise FlowDefinitionError(
            f"step {step!r} ({kind.name}) got unknown option(s) {said}; "
            f"it takes {', '.join(sorted(allowed)) or 'no options'}"
        )
    missing = [r for r in kind.required if options.get(r) is None]
    if missing:
        raise FlowDefinitionError(
            f"step {step!r} ({kind.name}) needs the option(s) {', '.join(missing)}"
        )
    filled = {**kind.optional, **options}
    kind.validate(step, filled)
    return filled
