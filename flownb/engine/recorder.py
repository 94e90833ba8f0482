"""Turns what happens in a run into events, commits them, and tells listeners.

Events emitted during one turn of the engine's loop are submitted together:
a wide wave of steps finishing at once shares one commit. An attempt's start
waits: it is committed ``LAZY_FLUSH`` seconds after it was emitted, or with
the next commit someone waits for (``starts=True``), whichever comes first;
an attempt that ends before then is written as its end alone, which carries
``started_at``. So a step shorter than ``LAZY_FLUSH`` costs one row, and a fast
chain one commit a step.

Listeners hear the rows the table gets, as they are submitted: an attempt's
start when it is submitted (never, for an attempt that ended first), every
other event at once. A live view of 1,000 short steps folds 1,000 events, not
2,000, and no start is built only to be heard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flownb.engine.clock import SYSTEM, Clock
from flownb.engine.context import Secrets
from flownb.store.base import Event, Store, StoredValue
from flownb.store.codecs import Encoded
from flownb.store.events import Members

if TYPE_CHECKING:
    from flownb.executors.loop import EngineLoop

Listener = Callable[[Event], None]
LAZY_FLUSH = 0.05
#: how long a commit nobody waits for is held for others to join it
GATHER = 0.005


class Recorder:
    """Appends a run's events to its store, in order, in as few commits as possible."""

    def __init__(
        self, store: Store, run_id: str, loop: EngineLoop, next_seq: int = 1, *, clock: Clock = SYSTEM
    ) -> None:
        self.store = store
        self._now = clock.time
        self.loop = loop
        self.run_id = run_id
        self._seq = next_seq
        self._events: list[Event] = []
        #: (step, attempt) -> the start of an attempt, not yet submitted: (step, seq, payload, at)
        self._starts: dict[tuple[str, int], tuple[str, int, dict[str, Any], float]] = {}
        self._with_starts = False
        self._values: list[StoredValue] = []
        self._future: Future[None] | None = None
        #: a flush of held starts is due (its timer is not cancelled: a flush disarms it)
        self._lazy = False
        self._urgent = False
        self.listeners: list[Listener] = []
        #: the first write that failed: the run reports it instead of succeeding
        self.write_error: BaseException | None = None
        #: values scrubbed from every payload before it is recorded or heard (see Secrets)
        self.secrets = Secrets.from_environment()

    def emit(self, event: str, step: str | None = None, **payload: Any) -> None:
        self.append(event, step, payload)

    def append(self, event: str, step: str | None, payload: dict[str, Any], at: float | None = None) -> None:
        """Record an event (``emit`` with the payload as a dict, and optionally its time)."""
        if event == Members.STEP_STARTED and step is not None:
            self.start(step, payload, self._now() if at is None else at)
            return
        if self.secrets:
            payload = self.secrets.scrub_payload(payload)
        # the name as a plain str: Arrow converts a StrEnum thirty times slower than a str
        record = Event(self.run_id, self._seq, event if type(event) is str else str(event), step, payload,
                       self._now() if at is None else at)  # fmt: skip
        self._seq += 1
        if self._starts and event == Members.STEP_FINISHED:
            # the end record says when it started
            self._starts.pop((step or "", payload.get("attempt", 0)), None)
        self._events.append(record)
        if self.listeners:
            self._tell(record)

    def start(self, step: str, payload: dict[str, Any], at: float) -> None:
        """Record an attempt's start: held until it is due (see the module docstring), and
        made an event only then, for the store and the listeners alike; most attempts end first."""
        held = (step, self._seq, payload, at)
        self._seq += 1
        self._starts[(step, payload.get("attempt", 0))] = held
        if not self._lazy:
            self._lazy = True
            self.loop.later(LAZY_FLUSH, self._flush_starts)

    def _started(self, held: tuple[str, int, dict[str, Any], float]) -> Event:
        step, seq, payload, at = held
        if self.secrets:
            payload = self.secrets.scrub_payload(payload)
        return Event(self.run_id, seq, Members.STEP_STARTED, step, payload, at)

    def _tell(self, record: Event) -> None:
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # a broken view must never break the run; the log says what broke
                logging.getLogger("flownb").exception("flownb: a listener of run %s failed", self.run_id)

    def output(self, step: str, name: str, encoded: Encoded) -> dict[str, Any]:
        """An output's record for its ``step_finished`` event; its value is kept
        inline when small, else beside it (``_values``, and a table of its own for
        a table); a volatile output records only why it was not stored."""
        payload: dict[str, Any] = {
            "name": name, "codec": encoded.codec, "size_bytes": encoded.size_bytes, "hash": encoded.hash,
        }  # fmt: skip
        if encoded.table is not None:
            payload["table"] = _table_name(self.run_id, step, name)
            self._values.append(StoredValue(self.run_id, step, name, encoded, payload["table"]))
        elif encoded.blob is not None:
            self._values.append(StoredValue(self.run_id, step, name, encoded))
        elif encoded.reason is not None:
            payload["reason"] = encoded.reason
        else:
            payload["value"] = encoded.inline
        return payload

    def commit(self, *, urgent: bool = True, starts: bool = True, here: bool = False) -> Future[None]:
        """Submit what was emitted, at the end of this loop turn; done once committed.

        ``urgent=False`` says nobody waits for it (a completion without dependents,
        a retry notice): the store may hold it a few milliseconds to commit it
        with others, so that a wide wave costs a few large commits, not many small.
        ``starts=False`` leaves the starts of running attempts to their timer.
        ``here=True`` (urgent only) commits on the calling thread when the store's
        writer is idle, saving two thread wake-ups: for a worker that settles the
        step of a chain while nothing else runs that could share the commit.
        """
        self._urgent = self._urgent or urgent
        self._with_starts = self._with_starts or starts
        future = self._future
        if future is None:
            future = self._future = Future()
            if not urgent:  # gather what the next few milliseconds bring into one submit
                self.loop.later(GATHER, self._flush)
                return future
        if urgent:  # someone waits: the writer gathers what else is queued anyway
            self._flush(here)
        return future

    def _flush_starts(self) -> None:
        if self._lazy:
            self._with_starts = True
            self._flush()

    def _flush(self, here: bool = False) -> None:
        future, self._future = self._future, None
        urgent, self._urgent = self._urgent, False
        events, self._events = self._events, []
        if self._with_starts and self._starts:
            starts = [self._started(held) for held in self._starts.values()]
            events.extend(starts)
            self._starts = {}
            self._lazy = False
            if self.listeners:
                for record in starts:
                    self._tell(record)
        self._with_starts = False
        values, self._values = self._values, []
        if not events and not values:
            if future is not None:
                future.set_result(None)
            return
        submitted = (here and self.store.commit_now(events, values)) or self.store.submit(events, values, urgent=urgent)
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


def _table_name(run_id: str, step: str, name: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in f"{step}_{name}" if c not in "[]")
    return f"output_{run_id}_{safe}"
