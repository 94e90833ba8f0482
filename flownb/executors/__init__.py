"""Where synchronous step code runs: local threads, or a Dask cluster.

Executors sit below the engine: they know an attempt only as :class:`Attempt`
(the engine's StepContext is one), capture a step's output with capture.py,
and the local one may act for the engine's loop (loop.py) while it sleeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flownb.executors.capture import StepLog


class Attempt(Protocol):
    """What an executor needs of one attempt of a step."""

    @property
    def step(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def log(self) -> StepLog: ...


class Executor(Protocol):
    name: str

    async def call(self, fn: Any, kwargs: dict[str, Any], ctx: Attempt) -> Any:
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
