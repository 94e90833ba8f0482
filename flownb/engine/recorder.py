"""Turns what happens in a run into events, commits them, and tells listeners."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flownb.store.base import Event, Store, StoredValue
from flownb.store.codecs import Encoded

Listener = Callable[[Event], None]


class Recorder:
    """Appends a run's events to its store, in order, in as few commits as possible."""

    def __init__(self, store: Store, run_id: str, next_seq: int = 1) -> None:
        self.store = store
        self.run_id = run_id
        self._seq = next_seq
        self._events: list[Event] = []
        self._values: list[StoredValue] = []
        self.listeners: list[Listener] = []

    def emit(self, event: str, step: str | None = None, **payload: Any) -> Event:
        record = Event(self.run_id, self._seq, event, step, payload)
        self._seq += 1
        self._events.append(record)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # noqa: BLE001  (a broken view must never break the run)
                traceback.print_exc()
        return record

    def output(self, step: str, name: str, encoded: Encoded) -> dict[str, Any]:
        """Record an output event (and its value beside it when it is not inline)."""
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
        self.emit("output", step, **payload)
        return payload

    def commit(self) -> Future[None]:
        """Submit everything emitted so far; the future is done once it is committed."""
        events, self._events = self._events, []
        values, self._values = self._values, []
        return self.store.submit(events, values)


def _table_name(run_id: str, step: str, name: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in f"{step}_{name}" if c not in "[]")
    return f"output_{run_id}_{safe}"
