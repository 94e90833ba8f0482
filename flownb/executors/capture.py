"""Per-step stdout/stderr: a ``sys.stdout`` proxy routed by a ContextVar.

Steps run in worker threads and on the engine's loop, in parallel; ``print``
inside a step must land in that step's log and in no cell's output. The proxy
looks up the current step's log in a ContextVar (copied into worker threads),
and forwards everything else to the stream it wraps.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TextIO

_MAX_KEPT = 1_000_000  # characters of each stream kept for the store
_MAX_DISPLAY_BYTES = 4_000_000  # of displayed outputs (figures are ~20-100 kB of base64 each)
_LOGS_LOCK = threading.Lock()


class StepLog:
    """What one attempt printed and displayed, with an optional live listener.

    The listener hears ``(stream, text)`` for prints and ``("display", bundle)``
    for ``display()`` calls and a cell's shown value. Most steps print nothing:
    the buffers are made on the first write.
    """

    __slots__ = ("_displays", "_parts", "on_write", "run_id", "step")

    def __init__(
        self, on_write: Callable[[str, Any], None] | None = None, *, run_id: str = "", step: str = ""
    ) -> None:
        self.run_id = run_id
        self.step = step
        #: made on the first write: stream -> (pieces, characters kept)
        self._parts: dict[str, tuple[list[str], list[int]]] | None = None
        self._displays: list[dict[str, Any]] | None = None
        self.on_write = on_write

    def display(self, bundle: dict[str, Any]) -> None:
        """An output the step displayed: ``{"output_type": "display_data", "data": {mime: ...}, ...}``.

        The store keeps them up to a few megabytes an attempt; past that, only their text.
        """
        with _LOGS_LOCK:
            if self._displays is None:
                self._displays = []
            kept = sum(_bundle_size(b) for b in self._displays)
            if kept + _bundle_size(bundle) > _MAX_DISPLAY_BYTES:
                text = bundle.get("data", {}).get("text/plain", "")
                self._displays.append({**bundle, "data": {"text/plain": text}})
            else:
                self._displays.append(bundle)
        if self.on_write is not None:
            self.on_write("display", bundle)

    @property
    def displays(self) -> list[dict[str, Any]]:
        with _LOGS_LOCK:
            return list(self._displays or ())

    def write(self, stream: str, text: str) -> None:
        if not text:
            return
        with _LOGS_LOCK:  # one lock for all logs: writes are short, and most steps print nothing
            if self._parts is None:
                self._parts = {"stdout": ([], [0]), "stderr": ([], [0])}
            pieces, kept = self._parts[stream]
            if kept[0] < _MAX_KEPT:
                pieces.append(text)
                kept[0] += len(text)
        if self.on_write is not None:
            self.on_write(stream, text)

    @property
    def written(self) -> bool:
        return self._parts is not None or self._displays is not None

    def text(self, stream: str) -> str:
        with _LOGS_LOCK:
            out = "".join(self._parts[stream][0]) if self._parts is not None else ""
        return out if len(out) <= _MAX_KEPT else out[:_MAX_KEPT] + "\n[... truncated]"


def _bundle_size(bundle: dict[str, Any]) -> int:
    return sum(len(v) if isinstance(v, str) else 64 for v in bundle.get("data", {}).values())


CURRENT_LOG: ContextVar[StepLog | None] = ContextVar("flownb_step_log", default=None)


class _Router:
    """Stands in for sys.stdout/sys.stderr; routes a step's writes to its log.

    Attribute *writes* stay on the proxy: IPython and ipykernel set attributes
    on ``sys.stdout`` per cell, and forwarding them would bypass the routing.
    """

    _own = frozenset({"_stream", "_name", "_extra"})

    def __init__(self, stream: TextIO, name: str) -> None:
        object.__setattr__(self, "_stream", stream)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_extra", {})

    def write(self, text: str) -> int:
        log = CURRENT_LOG.get()
        if log is not None:
            log.write(self._name, text)
            return len(text)
        # IPython 9 tees each cell's output by replacing sys.stdout.write with a
        # function that calls the write it found (this one): call the tee once and
        # let its inner call through to the real stream, or it recurses forever
        tee = self._extra.get("write")
        if tee is not None and not getattr(_inside, "tee", False):
            _inside.tee = True
            try:
                return int(tee(text) or 0)
            finally:
                _inside.tee = False
        return int(self._stream.write(text) or 0)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if CURRENT_LOG.get() is None:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        extra = object.__getattribute__(self, "_extra")
        if name in extra:
            return extra[name]
        return getattr(object.__getattribute__(self, "_stream"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._extra[name] = value


_install_lock = threading.Lock()
_inside = threading.local()


def install() -> None:
    """Wrap the current sys.stdout/sys.stderr (again, if something replaced them)."""
    with _install_lock:
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if current is not None and not isinstance(current, _Router):
                setattr(sys, name, _Router(current, name))
