"""Pictures users display, and the cached layout a live view recolors.

A graph's layout depends only on its steps and edges, never on their status:
:func:`layout_for` lays a graph out once (placeholder colors and a
placeholder second line as wide as any real one), cuts the SVG into a
template, and each frame fills in colors and text. Updating a 1,000-step
picture then costs a string join instead of a Graphviz layout.
:func:`layout_async` gives the cached layout or starts it on a thread of its
own, so that a live view never waits for a layout (or the one-off compile of
the in-process Graphviz) to show a frame.
"""

from __future__ import annotations

import functools
import html
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flownb.render.dot import NODE_ID_PREFIX, STATUS_COLORS, dot_source
from flownb.render.svg import render_svg

if TYPE_CHECKING:
    from flownb.model.flow import Graph

_PLACEHOLDER_FILL = "#fffffe"
_NODE = re.compile(r'<g id="' + re.escape(NODE_ID_PREFIX) + r'([^"]+)" class="node">(.*?)</g>', re.S)
_FILL = re.compile(r'fill="' + re.escape(_PLACEHOLDER_FILL) + '"')
_LAST_TEXT = re.compile(r"(<text[^>]*>)([^<]*)(</text>)(?!.*<text)", re.S)
_HEADER = re.compile(r"^.*?(?=<svg)", re.S)  # the XML prolog and comments, useless inline


@dataclass(frozen=True)
class StepDetail:
    """What a node shows besides its name."""

    status: str = "pending"
    duration_ms: float | None = None
    attempts: int = 0
    items_done: int = 0
    items: int | None = None  # a foreach step's item count, once known


def detail_text(d: StepDetail) -> str:
    """A node's second line, in words: ``succeeded · 1.2s``, ``retrying · attempt 2``, ``running · 3/10 items``."""
    parts = [d.status]
    if d.items is not None:
        parts.append(f"{d.items_done}/{d.items} items")
    if d.duration_ms is not None:
        parts.append(format_duration(d.duration_ms))
    if d.attempts > 1:
        parts.append(f"attempt {d.attempts}")
    return " · ".join(parts)


def _widest(foreach: bool) -> str:
    """A second line as wide as any real one, so that the layout fits every frame."""
    items = " · 9999/9999 items" if foreach else ""
    return f"succeeded{items} · 99m59s · attempt 99"


def format_duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class Layout:
    """One graph's SVG, cut into static parts and per-step holes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        widest = {n: _widest(getattr(s, "foreach", None) is not None) for n, s in graph.specs.items()}
        fill = dict.fromkeys(graph.specs, _PLACEHOLDER_FILL)
        svg = _HEADER.sub("", render_svg(dot_source(graph, details=widest, fill=fill)), count=1)
        # invariant: len(parts) == len(holes) + 1, the holes sitting between the parts
        self._parts: list[str] = [""]
        self._holes: list[tuple[str, str]] = []  # (step, "fill" | "text")
        pos = 0
        for m in _NODE.finditer(svg):
            name = html.unescape(m.group(1))
            body = m.group(2)
            self._parts[-1] += svg[pos : m.start(2)]
            cut = 0
            fill_at = _FILL.search(body)
            if fill_at is not None:
                self._parts[-1] += body[: fill_at.start()]
                self._hole(name, "fill")
                cut = fill_at.end()
            text_at = _LAST_TEXT.search(body)
            if text_at is not None and text_at.start() >= cut:
                self._parts[-1] += body[cut : text_at.end(1)]
                self._hole(name, "text")
                cut = text_at.start(3)
            self._parts[-1] += body[cut:]
            pos = m.end(2)
        self._parts[-1] += svg[pos:]

    def _hole(self, name: str, what: str) -> None:
        self._holes.append((name, what))
        self._parts.append("")

    @functools.cached_property
    def pending(self) -> str:
        """The picture with every step pending, made once per layout (a live view's first frame)."""
        return self.fill()

    def fill(self, details: Mapping[str, StepDetail] | None = None) -> str:
        """The picture with each step's color and second line filled in."""
        details = details or {}
        pending = StepDetail()
        out = [self._parts[0]]
        for (name, what), part in zip(self._holes, self._parts[1:], strict=True):
            d = details.get(name, pending)
            if what == "fill":
                out.append(f'fill="{STATUS_COLORS.get(d.status, STATUS_COLORS["pending"])}"')
            else:
                out.append(html.escape(detail_text(d)))
            out.append(part)
        return "".join(out)


_LAYOUTS: OrderedDict[tuple[str, ...], Layout] = OrderedDict()
_LAYOUTS_LOCK = threading.Lock()
_KEEP = 16
#: shapes being laid out on a thread of their own -> who to tell when done
_PENDING: dict[tuple[str, ...], list[Callable[[], None]]] = {}


#: each graph's key, made once: a graph does not change once made, and a live view asks at
#: every frame until the layout is there (a key of 1,000 steps takes about a millisecond)
_KEYS: weakref.WeakKeyDictionary[Graph, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _shape_key(graph: Graph) -> tuple[str, ...]:
    key = _KEYS.get(graph)
    if key is None:
        edges = sorted(f"{d}>{n}" for n, ds in graph.deps.items() for d in ds)
        nodes = sorted(
            f"{n}:{s.kind}:{s.fallback if isinstance(s.fallback, str) else ''}" for n, s in graph.specs.items()
        )
        key = _KEYS[graph] = (graph.flow, *nodes, "|", *edges)
    return key


def layout_for(graph: Graph) -> Layout:
    """The cached layout of a graph's shape (steps, kinds and edges)."""
    key = _shape_key(graph)
    with _LAYOUTS_LOCK:
        found = _LAYOUTS.get(key)
        if found is not None:
            _LAYOUTS.move_to_end(key)
            return found
    layout = Layout(graph)  # outside the lock: a big layout must not block small ones
    with _LAYOUTS_LOCK:
        _LAYOUTS[key] = layout
        while len(_LAYOUTS) > _KEEP:
            _LAYOUTS.popitem(last=False)
    return layout


def cached_layout(graph: Graph) -> Layout | None:
    """The layout of ``graph``'s shape if it was made already; never lays out."""
    with _LAYOUTS_LOCK:
        return _LAYOUTS.get(_shape_key(graph))


def layout_async(graph: Graph, on_ready: Callable[[], None]) -> Layout | None:
    """The cached layout of ``graph``, or None while a thread makes it.

    Never blocks on Graphviz: when the layout is missing, one thread per shape
    lays it out and then calls every ``on_ready`` given meanwhile (on that
    thread); the next call returns it. A layout that fails calls them too, and
    later calls try again.
    """
    key = _shape_key(graph)
    with _LAYOUTS_LOCK:
        found = _LAYOUTS.get(key)
        if found is not None:
            return found
        waiting = _PENDING.get(key)
        if waiting is not None:
            waiting.append(on_ready)
            return None
        _PENDING[key] = [on_ready]
    threading.Thread(target=_lay_out, args=(graph, key), name="flownb-layout", daemon=True).start()
    return None


def _lay_out(graph: Graph, key: tuple[str, ...]) -> None:
    import logging

    try:
        layout_for(graph)
    except Exception:
        logging.getLogger("flownb").exception("could not lay out the graph of flow %r", graph.flow)
    finally:
        with _LAYOUTS_LOCK:
            callbacks = _PENDING.pop(key, [])
        for callback in callbacks:
            callback()


def flow_svg(
    graph: Graph,
    statuses: Mapping[str, str] | None = None,
    *,
    durations: Mapping[str, float] | None = None,
    attempts: Mapping[str, int] | None = None,
) -> str:
    """The SVG of ``graph``, each step colored by its status (default: pending)."""
    statuses, durations, attempts = statuses or {}, durations or {}, attempts or {}
    details = {
        n: StepDetail(statuses.get(n, "pending"), durations.get(n), attempts.get(n, 0)) for n in graph.specs
    }
    return layout_for(graph).fill(details)


class FlowPicture:
    """An SVG that notebooks, VS Code and nbconvert display."""

    def __init__(self, svg: str, title: str = "flow") -> None:
        self.svg = svg
        self.title = title

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"image/svg+xml": self.svg, "text/plain": f"<{self.title}>"}

    def __repr__(self) -> str:
        return f"<FlowPicture {self.title}>"


def flow_picture(graph: Graph, statuses: Mapping[str, str] | None = None) -> FlowPicture:
    """The picture of a flow (static: every step pending unless ``statuses`` says otherwise)."""
    return FlowPicture(flow_svg(graph, statuses), f"flow {graph.flow!r}: {len(graph.specs)} steps")
