"""Coalesced redraws on a thread of their own: never more than ten a second, never stale.

The engine's thread only folds events into a :class:`RunState` and pokes the
painter; the painter redraws a view when its next slot comes. Guarantees:

* Many pokes before a slot make one redraw.
* A change waits at most ``MAX_INTERVAL`` seconds to be drawn (plus the time the
  redraw itself takes): at least two frames a second while anything changes.
  A redraw that took ``t`` seconds waits ``COST_FACTOR * t`` before the next,
  within ``[MIN_INTERVAL, MAX_INTERVAL]``, so drawing a big flow takes about a
  tenth of a core at most from the run it shows. One-off work (laying the
  graph out, compiling the in-process Graphviz) happens on other threads and
  never counts as a redraw's cost.
* An urgent poke (the run ended) is drawn at once, whatever the slot says.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

MIN_INTERVAL = 0.1  # seconds: about ten frames a second at most
MAX_INTERVAL = 0.4  # ... and a change waits no longer than this (plus one redraw)
COST_FACTOR = 10.0

_PAINTING = -1.0  # next_paint while a redraw runs
log = logging.getLogger("flownb")


class Paintable(Protocol):
    next_paint: float

    def paint(self) -> None: ...


class Painter:
    def __init__(self, min_interval: float = MIN_INTERVAL, max_interval: float = MAX_INTERVAL) -> None:
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._cond = threading.Condition()
        self._dirty: dict[int, Paintable] = {}
        self._thread: threading.Thread | None = None
        self._busy = False
        self.paints = 0

    def poke(self, view: Paintable, *, urgent: bool = False) -> None:
        """Ask for a redraw of ``view`` (any thread); many pokes make one redraw.

        ``urgent`` draws it as soon as the painter is free (the final frame of a run).
        """
        if urgent:
            view.next_paint = 0.0
        elif id(view) in self._dirty:  # the common case, without the lock: a redraw is already due
            return
        with self._cond:
            if id(view) in self._dirty and not urgent:
                return
            self._dirty[id(view)] = view
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="flownb-painter", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pace(self, view: Paintable, started: float, ended: float) -> None:
        """Set when ``view`` may be redrawn next, after a redraw from ``started`` to ``ended``
        (``time.monotonic()``): the painter's own, or one its view drew itself (its first)."""
        view.next_paint = ended + min(self.max_interval, max(self.min_interval, COST_FACTOR * (ended - started)))

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until no redraw is pending (tests and the benchmark)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._dirty or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._dirty:
                    self._cond.wait()
                now = time.monotonic()
                due = min(v.next_paint for v in self._dirty.values())
                if due > now:
                    self._cond.wait(due - now)
                    continue
                ready = [v for v in self._dirty.values() if v.next_paint <= now]
                for v in ready:
                    del self._dirty[id(v)]
                    v.next_paint = _PAINTING
                self._busy = True
            for view in ready:
                t0 = time.monotonic()
                try:
                    view.paint()
                except Exception:  # a broken view must never stop the others
                    log.exception("flownb: a live view could not be redrawn")
                if view.next_paint == _PAINTING:  # else an urgent poke came meanwhile: it keeps its "now"
                    self.pace(view, t0, time.monotonic())
                self.paints += 1
            with self._cond:
                self._busy = False
                self._cond.notify_all()


PAINTER = Painter()
