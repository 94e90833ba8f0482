"""Local execution: synchronous steps in a thread pool beside the engine's loop.

A thread cannot be killed: when an attempt times out or is cancelled, the
engine stops waiting, records the attempt, and the thread is abandoned to
finish on its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from flownb.engine.capture import CURRENT_LOG

if TYPE_CHECKING:
    from flownb.engine.context import StepContext


class LocalExecutor:
    name = "local"

    def __init__(self, max_workers: int | None = None) -> None:
        workers = max_workers or int(os.environ.get("FLOWNB_THREADS", "64"))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flownb-step")

    async def call(self, fn: Any, kwargs: dict[str, Any], ctx: StepContext) -> Any:
        context = contextvars.copy_context()
        context.run(CURRENT_LOG.set, ctx.log)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: context.run(fn, **kwargs))


LOCAL = LocalExecutor()
