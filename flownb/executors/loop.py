"""The engine's event loop, which lends its thread's role while it sleeps.

Everything a run keeps (its steps' states, its recorder, its ready queue) is
touched by one thread at a time: the thread that holds :attr:`EngineLoop.lock`.
The loop holds it whenever it runs callbacks and lets go only while it waits
in ``select()``. A worker thread that finishes a plain step takes the lock if
it is free and settles the step itself, records it, and starts what it
released, as a callback on the loop would have done: no wake-up of the loop,
and the next step of a chain runs on the same worker at once. A worker that
finds the lock taken hands its completion to the loop as before.

Code that may run on either side schedules with :meth:`EngineLoop.soon` and
:meth:`EngineLoop.later` instead of ``call_soon``/``call_later``, and never
cancels tasks or resolves asyncio futures off the loop: those go to the loop.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Callable
from typing import Any


class _LendingSelector(selectors.DefaultSelector):
    """Lets go of the engine lock while the loop waits for I/O or a timer."""

    def __init__(self, loop: EngineLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        loop.lock.release()
        try:
            return super().select(timeout)
        finally:
            # a worker leaves the lock alone while the loop asks for it, so that
            # a stream of completions cannot keep the loop from its own work
            loop.wants_lock = True
            loop.lock.acquire()
            loop.wants_lock = False


class EngineLoop(asyncio.SelectorEventLoop):
    """The runtime's event loop: an asyncio loop, plus the lock that says who may
    act for it (:meth:`borrow`), and scheduling that works from either side."""

    def __init__(self) -> None:
        #: held by whoever may touch the state of runs: the loop, or a worker in its stead
        self.lock = threading.Lock()
        #: the loop waits for the lock: workers hand their completions over instead
        self.wants_lock = False
        self._engine_thread: int | None = None
        super().__init__(_LendingSelector(self))

    def run_forever(self) -> None:
        with self.lock:
            self._engine_thread = threading.get_ident()
            super().run_forever()

    def here(self) -> bool:
        """Whether the caller is the loop's own thread."""
        return threading.get_ident() == self._engine_thread

    def borrow(self) -> bool:
        """Take the lock for a worker if the loop sleeps and nobody else has it.

        The caller then acts as the loop would, and must :meth:`give_back`.
        """
        return not self.wants_lock and self.lock.acquire(blocking=False)

    def give_back(self) -> None:
        self.lock.release()

    def soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """``call_soon`` from the loop, or from a worker holding the lock."""
        if self.here():
            self.call_soon(callback, *args)
        else:
            self.call_soon_threadsafe(callback, *args)

    def later(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        """``call_later`` from the loop, or from a worker holding the lock."""
        if self.here():
            self.call_later(delay, callback, *args)
        else:
            self.call_soon_threadsafe(self.call_later, delay, callback, *args)
