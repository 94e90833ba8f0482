"""Local execution: synchronous steps on worker threads beside the engine's loop.

Workers take jobs from one queue and hand results back in batches: one
wake-up of the loop serves every completion that arrived meanwhile, which is
what keeps a wide wave of short steps cheap (``run_in_executor`` costs a
wake-up and two futures per call).

A thread cannot be killed: when an attempt times out or is cancelled, the
engine stops waiting, records the attempt, and the thread is abandoned to
finish on its own; a new worker is started when none is idle.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
from typing import TYPE_CHECKING, Any

from flownb.engine.capture import CURRENT_LOG

if TYPE_CHECKING:
    from flownb.engine.context import StepContext

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Any, dict[str, Any]]


class LocalExecutor:
    name = "local"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or int(os.environ.get("FLOWNB_THREADS", "64"))
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._done: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}

    async def call(self, fn: Any, kwargs: dict[str, Any], ctx: StepContext) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()
        context.run(CURRENT_LOG.set, ctx.log)
        self._claim_worker()
        self._jobs.put((loop, future, context, fn, kwargs))
        return await future

    def submit(self, fn: Any, kwargs: dict[str, Any], log: Any, callback: Any) -> None:
        """Run ``fn(**kwargs)`` and call ``callback(result, error)`` on the calling loop.

        The engine's fast path uses this instead of :meth:`call`: no future per step.
        """
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(CURRENT_LOG.set, log)
        self._claim_worker()
        self._jobs.put((loop, callback, context, fn, kwargs))

    def _claim_worker(self) -> None:
        with self._lock:
            if self._idle == 0 and self._workers < self.max_workers:
                self._workers += 1
                threading.Thread(target=self._work, name=f"flownb-step-{self._workers}", daemon=True).start()
            elif self._idle:
                self._idle -= 1

    def _work(self) -> None:
        while True:
            loop, future, context, fn, kwargs = self._jobs.get()
            result: Any = None
            error: BaseException | None = None
            try:
                result = context.run(fn, **kwargs)
            except BaseException as exc:  # noqa: BLE001  (delivered to the awaiting step)
                error = exc
            self._deliver(loop, future, result, error)
            with self._lock:
                self._idle += 1

    def _deliver(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any,
                 error: BaseException | None) -> None:  # fmt: skip
        with self._lock:
            batch = self._done.get(loop)
            wake = batch is None
            if wake:
                batch = self._done[loop] = []
            batch.append((future, result, error))  # type: ignore[union-attr]
        if wake:
            try:
                loop.call_soon_threadsafe(self._drain, loop)
            except RuntimeError:  # the loop was closed: nobody is waiting any more
                with self._lock:
                    self._done.pop(loop, None)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch = self._done.pop(loop, [])
        for target, result, error in batch:
            if not isinstance(target, asyncio.Future):
                target(result, error)  # a fast-path callback
            elif target.cancelled():
                continue
            elif error is not None:
                target.set_exception(error)
            else:
                target.set_result(result)


LOCAL = LocalExecutor()
