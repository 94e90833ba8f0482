"""The registry of step kinds: the built-in ones and any a user registers.

Each module of :mod:`flownb.steps` registers its kind on import. A flow looks a
kind up when a step is defined (to check its options and find the templates'
references); the step's spec then carries the kind, so the engine runs it
without a lookup. ``flownb.register_kind`` adds your own (see the README).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flownb.errors import FlowDefinitionError
from flownb.model import templates
from flownb.model.kinds import StepKind

_KINDS: dict[str, StepKind] = {}


def register_kind(kind: Any) -> StepKind:
    """Register a step kind under ``kind.name``; a later registration of the same name replaces it.

    A kind needs ``name`` and ``async def execute(self, ctx)``. The rest is optional:
    ``required`` and ``optional`` (option names, the latter with defaults; the step
    refuses any other option), ``main_option`` (what a ``%%step NAME --kind K`` cell's
    body fills), ``validate(step, options)`` (raise FlowDefinitionError for a bad
    value) and ``references(options)`` (the steps its templates read; by default,
    those of every option's strings). Returns the kind as registered.
    """
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise FlowDefinitionError(f"a step kind needs a name that is an identifier, not {name!r}")
    if not inspect.iscoroutinefunction(getattr(kind, "execute", None)):
        raise FlowDefinitionError(f"step kind {name!r} needs an `async def execute(self, ctx)` method")
    registered: StepKind = kind if _complete(kind) else _WithDefaults(kind)
    _KINDS[name] = registered
    return registered


def _complete(kind: Any) -> bool:
    return all(hasattr(kind, a) for a in ("main_option", "required", "optional", "references", "validate"))


class _WithDefaults:
    """A kind that left some of the protocol out: the rest, as documented in register_kind."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        self.name: str = kind.name
        self.main_option: str | None = getattr(kind, "main_option", None)
        self.required: tuple[str, ...] = tuple(getattr(kind, "required", ()))
        self.optional: Mapping[str, Any] = dict(getattr(kind, "optional", {}))

    def references(self, options: Mapping[str, Any]) -> set[str]:
        found = getattr(self.kind, "references", None)
        if found is not None:
            return set(found(options))
        return templates.value_references(dict(options))

    def validate(self, step: str, options: dict[str, Any]) -> None:
        check = getattr(self.kind, "validate", None)
        if check is not None:
            check(step, options)

    async def execute(self, ctx: Any) -> Any:
        return await self.kind.execute(ctx)


def get_kind(name: str, step: str | None = None) -> StepKind:
    """The kind called ``name``; an unknown name is a FlowDefinitionError listing the known ones."""
    kind = _KINDS.get(name)
    if kind is not None:
        return kind
    import flownb.steps  # noqa: F401  (the built-in kinds register themselves on import)

    try:
        return _KINDS[name]
    except KeyError:
        where = f" for step {step!r}" if step else ""
        raise FlowDefinitionError(
            f"unknown step kind {name!r}{where}; choose one of {', '.join(sorted(_KINDS))}"
        ) from None


def kinds() -> list[str]:
    """The names of the registered kinds."""
    import flownb.steps  # noqa: F401

    return sorted(_KINDS)
