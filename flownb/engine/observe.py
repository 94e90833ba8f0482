"""Watching a run of this process as it goes: ``run.observe(observer)``.

An :class:`Observer` hears three things: each event the run records (the same
rows the ``events`` table gets, as they are made, before they are committed),
what its steps print and display, and each output as its step succeeds. The
live view, the CLI's progress and the notebook's publishing of outputs are
observers; nothing above the engine reaches into a run any other way.

With ``replay=True`` the events recorded before the subscription come first,
then the live ones, each event once, in order: the subscription is made on the
engine's thread, where events are made, so none falls between the replay and
the live stream. Observers are called on the engine's threads: they must be
quick, and an observer that raises is logged and never breaks the run.

A run of another process has no live stream here: ``flownb.attach(run_id)
.events(follow=True)`` reads its events from the store as they are committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flownb.store.base import Event

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution
    from flownb.engine.runtime import Runtime


class Observer:
    """Override what you want to hear; the defaults ignore it."""

    def on_event(self, event: Event) -> None:
        """An event of the run, as it is recorded."""

    def on_log(self, step: str, attempt: int, stream: str, text: Any) -> None:
        """What an attempt writes: ``stream`` is ``stdout`` or ``stderr`` (``text`` a string, a
        piece of a line or several), or ``display`` (``text`` a MIME bundle: ``{"data": ...}``)."""

    def on_output(self, step: str, value: Any) -> None:
        """A step succeeded with ``value`` (its output in ``run.outputs``)."""


class Subscription:
    """An observer's hearing of one run; :meth:`close` ends it."""

    def __init__(self, ex: RunExecution, runtime: Runtime, observer: Observer) -> None:
        self._ex = ex
        self._runtime = runtime
        self.observer = observer
        self._lock = threading.RLock()
        self._seen: set[int] = set()
        self._held: list[Event] | None = None  # events heard live while the replay is read
        self._closed = False
        #: past any replay: each event comes once and in order, straight to the observer
        self._direct = False

    # -- the run's listeners ------------------------------------------------------------------

    def _event(self, e: Event) -> None:
        if self._direct:  # every event of a run goes this way: no lock, no bookkeeping
            if not self._closed:
                _safely(self.observer.on_event, e)
            return
        with self._lock:
            if self._held is not None:
                self._held.append(e)
            else:
                self._deliver(e)

    def _log(self, ex: RunExecution, step: str, stream: str, text: Any) -> None:
        if not self._closed:
            _safely(self.observer.on_log, step, ex.attempts.get(step, 0), stream, text)

    def _output(self, ex: RunExecution, step: str, value: Any) -> None:
        if not self._closed:
            _safely(self.observer.on_output, step, value)

    def _deliver(self, e: Event) -> None:
        if self._closed or e.seq in self._seen:
            return
        self._seen.add(e.seq)
        _safely(self.observer.on_event, e)

    # -- life -------------------------------------------------------------------------------------

    def start(self, replay: bool) -> None:
        ex = self._ex

        def attach() -> Any:  # on the engine's thread: no event is made meanwhile
            if replay:
                self._held = []
            ex.recorder.listeners.append(self._event)
            ex.log_listeners.append(self._log)
            ex.output_listeners.append(self._output)
            return ex.recorder.commit() if replay else None

        if not replay:
            self._direct = True  # from its first event on, nothing is heard twice
        committed = self._runtime.call(attach)
        if not replay:
            return
        committed.result()  # everything made before the subscription is in the store now
        recorded = sorted(ex.store.run_events(ex.run_id), key=lambda e: e.seq)
        with self._lock:
            for e in recorded:
                self._deliver(e)
            held, self._held = self._held or [], None
            for e in held:
                self._deliver(e)
            self._direct = True

    def close(self) -> None:
        """Stop hearing the run (at once; the listeners are taken off on the engine's thread)."""
        self._closed = True
        ex = self._ex

        def detach() -> None:
            _discard(ex.recorder.listeners, self._event)
            _discard(ex.log_listeners, self._log)
            _discard(ex.output_listeners, self._output)

        self._runtime.call(detach)


def observe(ex: RunExecution, runtime: Runtime, observer: Observer, *, replay: bool) -> Subscription:
    subscription = Subscription(ex, runtime, observer)
    subscription.start(replay)
    return subscription


def _discard(listeners: list[Any], mine: Any) -> None:
    if mine in listeners:
        listeners.remove(mine)


def _safely(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a broken observer must never break the run; the log says what broke
        logging.getLogger("flownb").exception("flownb: an observer failed")
