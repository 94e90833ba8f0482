"""Coalesced redraws: at most about ten a second, on a thread of their own.

The engine's thread only folds events into a :class:`RunState` and pokes the
painter; the painter redraws a view when its next slot comes. A redraw that
took ``t`` seconds waits ``10 t`` before the next, so drawing a big flow never
takes more than about a tenth of a core from the run it shows.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Protocol

MIN_INTERVAL = 0.1  # seconds: about 10 updates a second at most
COST_FACTOR = 25.0


class Paintable(Protocol):
    next_paint: float

    def paint(self) -> None: ...


class Painter:
    def __init__(self, min_interval: float = MIN_INTERVAL) -> None:
        self.min_interval = min_interval
        self._cond = threading.Condition()
        self._dirty: dict[int, Paintable] = {}
        self._thread: threading.Thread | None = None
        self.paints = 0

    def poke(self, view: Paintable) -> None:
        """Ask for a redraw of ``view`` (any thread); many pokes make one redraw."""
        if id(view) in self._dirty:  # the common case, without the lock: a redraw is already due
            return
        with self._cond:
            if id(view) in self._dirty:
                return
            self._dirty[id(view)] = view
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="flownb-painter", daemon=True)
                self._thread.start()
            self._cond.notify()

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until no redraw is pending (tests, ``--wait``, the benchmark)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._dirty or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    _busy = False

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
                self._busy = True
            for view in ready:
                t0 = time.monotonic()
                try:
                    view.paint()
                except Exception:  # noqa: BLE001  (a broken view must never stop the others)
                    traceback.print_exc(file=sys.__stderr__)
                end = time.monotonic()
                view.next_paint = end + max(self.min_interval, COST_FACTOR * (end - t0))
                self.paints += 1
            with self._cond:
                self._busy = False
                self._cond.notify_all()


PAINTER = Painter()
