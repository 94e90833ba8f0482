"""The graph of a live view: an anywidget the browser zooms, pans and recolours.

The picture (the laid-out SVG) is sent once per layout; a status change travels
as a patch naming only the steps that changed (tens of bytes a step), and the
browser recolours the nodes by class, from the theme's colours. The elapsed
time ticks in the browser. A click on a node asks the view to open that step's
panel.

Guarantees:

* The browser ends up with every step's latest state whenever it started
  listening: patches sent before a model said "hello" (they may be lost) carry
  every change since the last snapshot, and "hello" is answered with the
  whole state; past ``REBASE_STEPS`` unconfirmed changes the ``snapshot``
  trait (which every model reads when it starts) is sent instead.
* ``finish`` stores the final state in ``snapshot``, so saved widget state
  (nbclient, "save widget state") shows the end of the run.
* All sends happen under one lock: a model never sees an older state after a
  newer one (each message carries a sequence number it checks).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anywidget
import traitlets

from flownb.notebook.assets import GRAPH_CSS, GRAPH_JS

NodeState = tuple[str, str, str]  # (status, label, note: a failure's error or a skip's reason)
PENDING: NodeState = ("pending", "pending", "")  # what the browser assumes of a step it was told nothing of
REBASE_STEPS = 200


class GraphWidget(anywidget.AnyWidget):
    _esm = GRAPH_JS  # anywidget makes these synced traits
    _css = GRAPH_CSS
    uid = traitlets.Unicode("").tag(sync=True)
    svg = traitlets.Unicode("").tag(sync=True)
    #: every step's state as JSON text (a string, not a dict: ipywidgets walks a dict of
    #: 1,000 entries looking for binary buffers each time it is sent)
    snapshot = traitlets.Unicode("").tag(sync=True)

    def __init__(self, on_select: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(uid=uuid.uuid4().hex, **kwargs)
        self._on_select = on_select
        self._lock = threading.Lock()
        self._seq = 0
        self._current: dict[str, NodeState] = {}
        self._unconfirmed: dict[str, NodeState] = {}  # changes since the last snapshot, until "hello"
        self._heard = False
        self._elapsed_ms = 0.0
        self._running = True
        self._total = 0
        #: messages sent to the browser by ``update`` (tests and the benchmark count them)
        self.patches = 0
        self.on_msg(self._on_message)

    # -- the painter thread -------------------------------------------------------------------

    def set_picture(self, svg: str) -> None:
        """A new layout (sent once; the nodes are recoloured from the current state)."""
        if svg != self.svg:
            self.svg = svg

    def update(self, steps: Mapping[str, NodeState], elapsed_ms: float, running: bool) -> None:
        """Send what changed since the last call (nothing when nothing did)."""
        with self._lock:
            changed = {n: v for n, v in steps.items() if self._current.get(n, PENDING) != v}
            if not changed and running == self._running:
                return
            self._current.update(changed)
            self._total = len(steps)
            self._elapsed_ms, self._running = elapsed_ms, running
            self._seq += 1
            if self._heard:
                self._post("patch", changed)
                return
            self._unconfirmed.update(changed)
            if len(self._unconfirmed) > REBASE_STEPS:
                self.snapshot = json.dumps(self._state())
                self._unconfirmed = {}
            else:
                self._post("patch", dict(self._unconfirmed))

    def finish(self, steps: Mapping[str, NodeState], elapsed_ms: float) -> None:
        """The final state, kept in ``snapshot`` (what a saved notebook's widget state holds)."""
        with self._lock:
            changed = {n: v for n, v in steps.items() if self._current.get(n, PENDING) != v}
            if not changed and not self._running and self.snapshot:
                return  # drawn already: a late poke after the end changes nothing here
            self._current.update(steps)
            self._total = len(steps)
            self._elapsed_ms, self._running = elapsed_ms, False
            self._seq += 1
            self._unconfirmed = {}
            self.snapshot = json.dumps(self._state())

    def saved(self) -> dict[str, Any]:
        """The ``snapshot`` as a dict (empty before the first one)."""
        return dict(json.loads(self.snapshot)) if self.snapshot else {}

    # -- the kernel's shell thread (messages from the browser) ------------------------------------

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("kind") == "hello":
            with self._lock:
                self._heard = True
                self._unconfirmed = {}
                self._post("full", self._current)
        elif content.get("kind") == "select" and isinstance(content.get("step"), str) and self._on_select:
            self._on_select(content["step"])

    # -- helpers (callers hold the lock) --------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"seq": self._seq, "steps": {n: list(v) for n, v in self._current.items()},
                "elapsed_ms": round(self._elapsed_ms), "running": self._running, "total": self._total}  # fmt: skip

    def _post(self, kind: str, steps: Mapping[str, NodeState]) -> None:
        self.patches += 1
        self.send({"kind": kind, "seq": self._seq, "steps": {n: list(v) for n, v in steps.items()},
                   "elapsed_ms": round(self._elapsed_ms), "running": self._running, "total": self._total})  # fmt: skip
