"""A re-entrant-safe version of the engine's stdout/stderr proxy, for kernels.

IPython 9 tees every cell's output into its history by replacing
``sys.stdout.write`` with a function that calls the ``write`` it found
before, which, once the engine's proxy is installed, is the proxy's own
``write``; the proxy then calls the tee again, without end (RecursionError on
the next ``print``). This proxy calls the tee once and lets the tee's inner
call through to the real stream. (Engine fix proposed in the report:
the same guard in ``flownb/engine/capture.py``'s ``_Router.write``.)
"""

from __future__ import annotations

import sys
import threading

from flownb.engine import capture

_inside = threading.local()


class SafeRouter(capture._Router):
    def write(self, text: str) -> int:
        log = capture.CURRENT_LOG.get()
        if log is not None:
            log.write(self._name, text)
            return len(text)
        tee = self._extra.get("write")
        if tee is not None and not getattr(_inside, "tee", False):
            _inside.tee = True
            try:
                return int(tee(text) or 0)
            finally:
                _inside.tee = False
        return int(self._stream.write(text) or 0)


def install() -> None:
    """Wrap sys.stdout/sys.stderr (replacing the engine's plain proxy, if it came first)."""
    with capture._install_lock:
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if current is None or isinstance(current, SafeRouter):
                continue
            inner = object.__getattribute__(current, "_stream") if isinstance(current, capture._Router) else current
            setattr(sys, name, SafeRouter(inner, name))
