"""Where synchronous step code runs: local threads, or a Dask cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flownb.engine.context import StepContext


class Executor(Protocol):
    name: str

    async def call(self, fn: Any, kwargs: dict[str, Any], ctx: StepContext) -> Any:
        """Run ``fn(**kwargs)`` for one attempt, with its output routed to ``ctx.log``."""
        ...


def resolve_executor(spec: Any) -> Executor:
    """``None``/``"local"``: threads; ``"dask"``, a Client or an address: Dask."""
    from flownb.executors.local import LOCAL

    if spec is None or spec == "local":
        return LOCAL
    if hasattr(spec, "call") and hasattr(spec, "name"):
        return spec  # type: ignore[no-any-return]
    from flownb.executors.dask import DaskExecutor

    return DaskExecutor.for_target(spec)
