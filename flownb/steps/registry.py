"""The registry of step kinds: the built-in ones and any a user registers.

Each module of :mod:`flownb.steps` registers its kind on import. A flow looks a
kind up when a step is defined (to check its options and find the templates'
references); the step's spec then carries the kind, so the engine runs it
without a lookup. ``flownb.register_kind`` adds your own (see the README).
"""

from __future__ import annotations

from flownb.errors import FlowDefinitionError
from flownb.model.kinds import StepKind

_KINDS: dict[str, StepKind] = {}


def register_kind(kind: StepKind) -> StepKind:
    """Register a step kind under ``kind.name`` (a later registration of the same name replaces it)."""
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise FlowDefinitionError(f"a step kind needs a name that is an identifier, not {name!r}")
    for attr in ("required", "optional", "references", "validate", "execute"):
        if not hasattr(kind, attr):
            raise FlowDefinitionError(f"step kind {name!r} has no {attr!r}: see flownb.model.kinds.StepKind")
    _KINDS[name] = kind
    return kind


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
