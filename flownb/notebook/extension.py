"""``%load_ext flownb``: the magics, the cell-id hook, and per-step ``display()``.

With a live frontend it also warms the in-process Graphviz (on a thread), adds the
rich displays (``Run``/``Flow`` as HTML, figures as PNG), tab completion of the
magics, and in Colab enables the custom widget manager the live view needs.

Steps run in worker threads; ``print`` is routed to a step's log by the
engine's stdout proxy, and ``display()`` is routed here: while a step runs,
the ContextVar ``CURRENT_LOG`` names its run and step, and the display
publisher hands the formatted output to that step's panel instead of the
cell that happens to be running.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from flownb.executors import capture
from flownb.notebook.session import Session


def load(ipython: Any, *, live: bool = True) -> Session:
    found = Session._sessions.get(id(ipython))
    if found is not None:
        return found
    from flownb.notebook.magics import FlowMagics

    session = Session(ipython, live=live)
    session.attach()
    ipython.register_magics(FlowMagics(ipython, session))
    ipython.events.register("pre_run_cell", session.pre_run_cell)
    _route_display(ipython, session)
    capture.install()
    if live:
        from flownb.notebook import rich
        from flownb.notebook.completion import Completer
        from flownb.render import warm_renderer

        warm_renderer()  # the first live view must not wait for the in-process Graphviz to compile
        rich.register(ipython, session)
        Completer(session).install(ipython)
        _colab()
    return session


COLAB_HINT = (
    "flownb: in Colab, run `from google.colab import output; output.enable_custom_widget_manager()` "
    "to see the live view (it is an ipywidgets/anywidget widget)"
)


def _colab() -> None:
    """Colab shows third-party widgets only through its custom widget manager: enable it, or say how."""
    if "google.colab" not in sys.modules:
        return
    try:
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()
    except Exception:  # noqa: BLE001  (any failure: the user can still do it by hand)
        print(COLAB_HINT)


def unload(ipython: Any) -> None:
    session = Session._sessions.get(id(ipython))
    if session is None:
        return
    session.detach()
    with contextlib.suppress(ValueError):  # already gone
        ipython.events.unregister("pre_run_cell", session.pre_run_cell)
    pub = getattr(ipython, "display_pub", None)
    original = getattr(pub, "_flownb_original_publish", None)
    if pub is not None and original is not None:
        pub.publish = original
        del pub._flownb_original_publish


def _route_display(ipython: Any, session: Session) -> None:
    pub = getattr(ipython, "display_pub", None)
    if pub is None or hasattr(pub, "_flownb_original_publish"):
        return
    original = pub.publish

    def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        log = capture.CURRENT_LOG.get()
        if log is not None and log.run_id:
            # the step's own output: its panel, the store and the CLI hear it through its log
            log.display({"output_type": "display_data", "data": _jsonable(data), "metadata": dict(metadata or {})})
            return None
        return original(data, metadata, *args, **kwargs)

    pub._flownb_original_publish = original
    pub.publish = publish


def _jsonable(data: Any) -> dict[str, Any]:
    """A mime bundle as Jupyter sends it: binary images (PNG, JPEG bytes) as base64 text.

    The kernel's own publisher does this on the way to the frontend; a step's display
    leaves before it, for the panel (a widget's JSON state) and the store (JSON).
    """
    import base64

    return {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes | bytearray) else v
            for k, v in dict(data or {}).items()}  # fmt: skip
