"""Turns what happens in a run into events, commits them, and tells listeners.

Events emitted during one turn of the engine's loop are submitted together:
a wide wave of steps finishing at once shares one commit. An attempt's start
is committed with the next completion, or at the latest ``LAZY_FLUSH`` seconds
after it was emitted, so that a fast chain of steps costs one commit a step.
An attempt that ends before its start was submitted is written as its end
alone, which carries ``started_at``: listeners still hear both.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flownb.store.base import Event, Store, StoredValue
from flownb.store.codecs import Encoded

Listener = Callable[[Event], None]
LAZY_FLUSH = 0.05


class Recorder:
    """Appends a run's events to its store, in order, in as few commits as possible."""

    def __init__(self, store: Store, run_id: str, next_seq: int = 1) -> None:
        self.store = store
        self.run_id = run_id
        self._seq = next_seq
        self._events: list[Event | None] = []
        #: (step, attempt) -> index in _events of a start not yet submitted
        self._starts: dict[tuple[str, int], int] = {}
        self._values: list[StoredValue] = []
        self._future: Future[None] | None = None
        self._lazy: asyncio.TimerHandle | None = None
        self._urgent = False
        self.listeners: list[Listener] = []
        #: the first write that failed: the run reports it instead of succeeding
        self.write_error: BaseException | None = None

    def emit(self, event: str, step: str | None = None, **payload: Any) -> Event:
        record = Event(self.run_id, self._seq, event, step, payload)
        self._seq += 1
        if step is not None and event in ("step_started", "step_finished"):
            key = (step, payload.get("attempt", 0))
            if event == "step_started":
                self._starts[key] = len(self._events)
            else:
                at = self._starts.pop(key, None)
                if at is not None:
                    self._events[at] = None  # the end record says when it started
        self._events.append(record)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # noqa: BLE001  (a broken view must never break the run)
                traceback.print_exc()
        return record

    def output(self, step: str, name: str, encoded: Encoded) -> dict[str, Any]:
        """An output's record for its ``step_finished`` event; its value is kept
        inline when small, else beside it (``_values``, or a table of its own)."""
        payload: dict[str, Any] = {
            "name": name, "codec": encoded.codec, "size_bytes": encoded.size_bytes, "hash": encoded.hash,
        }  # fmt: skip
        if encoded.table is not None:
            payload["table"] = _table_name(self.run_id, step, name)
            self._values.append(StoredValue(self.run_id, step, name, encoded, payload["table"]))
        elif encoded.blob is not None:
            self._values.append(StoredValue(self.run_id, step, name, encoded))
        else:
            payload["value"] = encoded.inline
        return payload

    def commit(self, *, urgent: bool = True) -> Future[None]:
        """Submit what was emitted, at the end of this loop turn; done once committed.

        ``urgent=False`` says nobody waits for it (a completion without dependents,
        a retry notice): the store may hold it a few milliseconds to commit it
        with others, so that a wide wave costs a few large commits, not many small.
        """
        self._urgent = self._urgent or urgent
        future = self._future
        if future is None:
            future = self._future = Future()
            if not urgent:
                _loop().call_soon(self._flush)
                return future
        if urgent:  # someone waits: the writer gathers what else is queued anyway
            self._flush()
        return future

    def soon(self) -> None:
        """Make sure what was emitted is committed within ``LAZY_FLUSH`` seconds."""
        if self._future is None and self._lazy is None:
            self._lazy = _loop().call_later(LAZY_FLUSH, self._flush)

    def _flush(self) -> None:
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        future, self._future = self._future, None
        urgent, self._urgent = self._urgent, False
        events = [e for e in self._events if e is not None]
        self._events = []
        self._starts.clear()
        values, self._values = self._values, []
        if not events and not values:
            if future is not None:
                future.set_result(None)
            return
        submitted = self.store.submit(events, values, urgent=urgent)
        submitted.add_done_callback(self._check)
        if future is not None:
            submitted.add_done_callback(lambda f: _copy(f, future))

    def _check(self, submitted: Future[None]) -> None:
        if submitted.exception() is not None and self.write_error is None:
            self.write_error = submitted.exception()


def _copy(source: Future[None], target: Future[None]) -> None:
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(None)


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def _table_name(run_id: str, step: str, name: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in f"{step}_{name}" if c not in "[]")
    return f"output_{run_id}_{safe}"
