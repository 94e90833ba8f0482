"""Local execution: synchronous steps on worker threads beside the engine's loop.

Workers take jobs from one queue. A plain step's completion is settled by the
worker itself when the engine's loop sleeps (it borrows the loop's role, see
executors/loop.py); the first step that settling starts is kept by the same
worker and run next, without a hand-off (a chain runs on one thread, with no
wake-up between its steps). Otherwise results go back to the loop in batches:
one wake-up of the loop serves every completion that arrives until it has
worked through them (``run_in_executor`` costs a wake-up and two futures per
call).

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
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from flownb.executors.capture import CURRENT_LOG
from flownb.executors.loop import EngineLoop

if TYPE_CHECKING:
    from flownb.executors import Attempt

_Job = tuple["_Mailbox", Any, contextvars.Context, Any, dict[str, Any]]


class _Worker(threading.local):
    #: the worker is settling a completion for the loop: a job it submits may stay with it
    settling = False
    #: that job, run next by this worker
    kept: _Job | None = None


_WORKER = _Worker()


class LocalExecutor:
    name = "local"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or int(os.environ.get("FLOWNB_THREADS", "64"))
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = (
            weakref.WeakKeyDictionary()
        )
        #: the mailbox used last (there is one engine loop): found without a lookup
        self._last: _Mailbox | None = None

    async def call(self, fn: Any, kwargs: dict[str, Any], ctx: Attempt) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._put(loop, future, ctx.log, fn, kwargs)
        return await future

    def submit(self, fn: Any, kwargs: dict[str, Any], log: Any, callback: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``fn(**kwargs)`` and call ``callback(result, error)`` for ``loop``: on it, or
        on the worker in its stead when it is an :class:`EngineLoop` that sleeps. A
        callback whose ``dropped`` is true by the time a worker takes the job (the step
        was cancelled while it waited for a thread) is not called, nor is ``fn``.

        The engine's fast path uses this instead of :meth:`call`: no future per step.
        Called from the loop, or from a worker settling a step for it.
        """
        self._put(loop, callback, log, fn, kwargs)

    def _put(self, loop: asyncio.AbstractEventLoop, target: Any, log: Any, fn: Any, kwargs: dict[str, Any]) -> None:
        mailbox = self._last
        if mailbox is None or mailbox.loop() is not loop:
            mailbox = self._mailboxes.get(loop)
            if mailbox is None:
                mailbox = self._mailboxes[loop] = _Mailbox(loop)
            self._last = mailbox
        context = contextvars.copy_context()
        context.run(CURRENT_LOG.set, log)
        job = (mailbox, target, context, fn, kwargs)
        worker = _WORKER
        if worker.settling and worker.kept is None:
            worker.kept = job
            return
        self._claim_worker()
        self._jobs.put(job)

    def _claim_worker(self) -> None:
        with self._lock:
            if self._idle == 0 and self._workers < self.max_workers:
                self._workers += 1
                threading.Thread(target=self._work, name=f"flownb-step-{self._workers}", daemon=True).start()
            elif self._idle:
                self._idle -= 1

    def _work(self) -> None:
        worker = _WORKER
        while True:
            job: _Job | None = self._jobs.get()
            while job is not None:
                mailbox, target, context, fn, kwargs = job
                result: Any = None
                error: BaseException | None = None
                if _dropped(target):  # cancelled before it started: never run it
                    job = None
                    continue
                try:
                    result = context.run(fn, **kwargs)
                except BaseException as exc:  # noqa: BLE001  (delivered to the awaiting step)
                    error = exc
                worker.settling = True
                try:
                    mailbox.post((target, result, error))
                finally:
                    worker.settling = False
                job, worker.kept = worker.kept, None
            with self._lock:
                self._idle += 1


class _Mailbox:
    """Completions on their way back to one event loop.

    Workers append without a lock (``deque.append`` is atomic) and wake the
    loop only when no drain is pending: while the loop works through a batch,
    what arrives meanwhile joins it without another wake-up.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # a closed loop must not be kept alive by its mailbox
        self.lends = isinstance(loop, EngineLoop)
        self.items: deque[tuple[Any, Any, BaseException | None]] = deque()
        self.pending = False

    def post(self, item: tuple[Any, Any, BaseException | None]) -> None:
        target = item[0]
        if self.lends and not isinstance(target, asyncio.Future):
            loop = self.loop()
            if isinstance(loop, EngineLoop) and loop.borrow():
                try:
                    target(item[1], item[2])  # a fast-path callback, settled here for the loop
                except Exception as exc:  # noqa: BLE001  (reported as a failed loop callback would be)
                    loop.call_exception_handler({"message": "settling a step failed", "exception": exc})
                finally:
                    loop.give_back()
                return
        self.items.append(item)
        if not self.pending:
            self.pending = True
            loop = self.loop()
            try:
                if loop is None:
                    raise RuntimeError("the loop is gone")
                loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop was closed: nobody is waiting any more
                self.items.clear()

    def drain(self) -> None:
        items = self.items
        while True:
            while items:
                _settle(*items.popleft())
            self.pending = False
            if not items:  # anything appended after this check finds pending False and wakes us
                return
            self.pending = True


def _dropped(target: Any) -> bool:
    if isinstance(target, asyncio.Future):
        return target.cancelled()  # a read: the loop may cancel it meanwhile, then it runs
    return getattr(target, "dropped", False) is True


def _settle(target: Any, result: Any, error: BaseException | None) -> None:
    if not isinstance(target, asyncio.Future):
        target(result, error)  # a fast-path callback
    elif target.cancelled():
        return
    elif error is not None:
        target.set_exception(error)
    else:
        target.set_result(result)


LOCAL = LocalExecutor()
