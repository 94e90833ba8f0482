"""The callable a ``%%step`` cell becomes, and how it runs.

Each run of a cell step executes the cell's code in globals of its own: a
copy of the notebook's names plus the step's inputs. Parallel steps then never
race on the notebook namespace; outputs reach the namespace only once the step
has succeeded (the session publishes them).

The cell's source is registered in :mod:`linecache` under ``<step NAME>``,
whose line numbers are the cell's own (the ``%%step`` line is line 1), so a
traceback points at the line the user wrote.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import importlib
import inspect
import linecache
import pickle
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flownb.notebook.analysis import FLAGS

#: how an input variable is read from its producer step's value
BARE, KEY, COLUMN = "bare", "key", "column"


@dataclass(frozen=True)
class Binding:
    """Variable ``var`` comes from step ``step``'s value, read as ``mode``."""

    var: str
    step: str
    mode: str  # bare: the value; key: value[var]; column: [item[var] for item in value] (foreach)


@dataclass(frozen=True)
class CellInfo:
    """What the session needs to publish a cell step's value into the namespace."""

    outputs: tuple[str, ...]
    bare: bool
    """The value is the variable itself (the cell's only output is named like the step)."""
    foreach: bool


def cell_filename(step: str) -> str:
    return f"<step {step}>"


def register_source(step: str, cell_text: str) -> str:
    """Make tracebacks show the cell's lines; returns the file name used."""
    filename = cell_filename(step)
    lines = cell_text.splitlines(keepends=True)
    # mtime None: linecache.checkcache keeps the entry (there is no file to compare with)
    linecache.cache[filename] = (len(cell_text), None, lines, filename)
    return filename


def compile_cell(tree: Any, filename: str) -> types.CodeType:
    return compile(tree, filename, "exec", flags=FLAGS, dont_inherit=True)  # type: ignore[no-any-return]


def read_inputs(bindings: tuple[Binding, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Variable name -> value, from the producer steps' values the engine passed."""
    out: dict[str, Any] = {}
    for b in bindings:
        if b.step not in kwargs:
            continue
        value = kwargs[b.step]
        if b.mode == BARE:
            out[b.var] = value
        elif b.mode == KEY and isinstance(value, Mapping) and b.var in value:
            out[b.var] = value[b.var]
        elif b.mode == COLUMN and isinstance(value, list):
            out[b.var] = [item.get(b.var) if isinstance(item, Mapping) else item for item in value]
    return out


def collect(g: Mapping[str, Any], step: str, info: CellInfo) -> Any:
    if info.bare:
        return g.get(step)
    return {name: g[name] for name in info.outputs if name in g}


class CellFunction:
    """``fn(**inputs) -> outputs``: a cell step as the engine calls it.

    ``__signature__`` lists the producer steps and context names (``params``,
    ``item``...) as keyword parameters, which the flow reads as dependencies;
    ``__flownb_source__`` is the cell body (resume re-runs a step whose code
    changed); ``__flownb_remote__`` gives a picklable zero-argument callable
    that runs the cell from its source elsewhere (the Dask executor).
    """

    def __init__(
        self, step: str, body: str, code: types.CodeType, params: tuple[str, ...], bindings: tuple[Binding, ...],
        info: CellInfo, namespace: Callable[[], Mapping[str, Any]], reads: tuple[str, ...], first_line: int,
    ) -> None:  # fmt: skip
        self.__name__ = step
        self.__qualname__ = step
        self.__module__ = "__main__"
        self.__flownb_source__ = body
        self.__flownb_cell__ = info
        self.__signature__ = inspect.Signature(
            [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in params]
        )
        self._code = code
        self._bindings = bindings
        self._namespace = namespace
        self._reads = reads
        self._first_line = first_line
        self._context = tuple(p for p in params if p in ("params", "item", "index", "run"))

    def _globals(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        g = dict(self._namespace())
        g.setdefault("__builtins__", builtins)
        g["__name__"] = "__main__"
        g.update(read_inputs(self._bindings, kwargs))
        g.update({k: kwargs[k] for k in self._context if k in kwargs})
        return g

    def __call__(self, **kwargs: Any) -> Any:
        g = self._globals(kwargs)
        if self._code.co_flags & inspect.CO_COROUTINE:
            # top-level await: the python kind awaits this coroutine on the engine's loop
            return _finish(eval(self._code, g), g, self.__name__, self.__flownb_cell__)  # noqa: S307  (the user's own cell)
        exec(self._code, g)  # noqa: S102  (the user's own cell, in globals of its own)
        return collect(g, self.__name__, self.__flownb_cell__)

    def __flownb_remote__(self, kwargs: Mapping[str, Any]) -> Callable[[], Any]:
        """A picklable zero-argument callable running this cell with ``kwargs`` elsewhere."""
        inputs = read_inputs(self._bindings, kwargs)
        inputs.update({k: kwargs[k] for k in self._context if k in kwargs})
        shipped = ship_globals(self._namespace(), self._reads, exclude=set(inputs))
        return functools.partial(
            run_remote, self.__name__, self.__flownb_source__, self._first_line, shipped, inputs,
            self.__flownb_cell__,
        )  # fmt: skip


async def _finish(coro: Any, g: dict[str, Any], step: str, info: CellInfo) -> Any:
    await coro
    return collect(g, step, info)


@dataclass(frozen=True)
class ModuleRef:
    """A module travels by name and is imported again where the cell runs."""

    name: str


def ship_globals(namespace: Mapping[str, Any], reads: tuple[str, ...], *, exclude: set[str]) -> dict[str, Any]:
    """The notebook globals a cell reads that can travel to another process."""
    try:
        import cloudpickle  # type: ignore[import-untyped]

        dumps: Callable[[Any], bytes] = cloudpickle.dumps
    except ImportError:  # pragma: no cover  (dask brings cloudpickle)
        dumps = pickle.dumps
    out: dict[str, Any] = {}
    for name in reads:
        if name in exclude or name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            out[name] = ModuleRef(value.__name__)
            continue
        try:
            dumps(value)
        except Exception:  # noqa: BLE001,S112  (what cannot travel stays behind; the cell says what it misses)
            continue
        out[name] = value
    return out


def run_remote(
    step: str, body: str, first_line: int, shipped: dict[str, Any], inputs: dict[str, Any], info: CellInfo
) -> Any:
    """Run a cell from its source (in a Dask worker, or any other process)."""
    from flownb.notebook.analysis import parse_cell

    g: dict[str, Any] = {"__builtins__": builtins, "__name__": "__main__"}
    for name, value in shipped.items():
        g[name] = importlib.import_module(value.name) if isinstance(value, ModuleRef) else value
    g.update(inputs)
    code = compile_cell(parse_cell(body, step=step, first_line=first_line), cell_filename(step))
    if code.co_flags & inspect.CO_COROUTINE:
        return asyncio.run(_finish(eval(code, g), g, step, info))  # noqa: S307
    exec(code, g)  # noqa: S102
    return collect(g, step, info)
