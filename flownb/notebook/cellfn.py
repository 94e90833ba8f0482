"""The callable a ``%%step`` cell becomes, and how it runs.

Each run of a cell step executes the cell's code in globals of its own: the
notebook's names as they were when the run started, plus the versions of the
names it reads, from the cells that wrote them (see binding.py). Parallel steps
then never race on one namespace, and a name re-assigned by a later cell never
leaks into an earlier one. What the cell writes comes back as its value: the
variable itself when the cell's only output is named like the step, else a
dict of its outputs.

Functions defined in another step cell are rebound to this step's globals when
they arrive: a function looks its globals up when it is *called*, as in a
notebook, so it sees the versions this cell sees.

The cell's source is registered in :mod:`linecache` under ``<step NAME>``,
whose line numbers are the cell's own (the ``%%step`` line is line 1), so a
traceback points at the line the user wrote. IPython syntax (``%timeit``,
``!ls``) was turned into calls by the shell's input transformers; those calls
run against this step's globals (see stepshell.py).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import copy
import functools
import importlib
import inspect
import linecache
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flownb.notebook.analysis import FLAGS, PYPLOT
from flownb.notebook.binding import BARE, Binding, CellPlan

COLUMN = "column"
STEP_MARK = "__flownb_step__"
SHOW = "__flownb_show__"


@dataclass(frozen=True)
class CellInfo:
    """What the session needs to publish a cell step's value into the namespace."""

    outputs: tuple[str, ...]
    bare: bool
    """The value is the variable itself (the cell's only output is named like the step)."""
    foreach: bool
    final: frozenset[str] = frozenset()
    """The names whose final version (last writer in notebook order) this cell writes."""
    deletes: frozenset[str] = frozenset()
    position: int = 0
    """The cell's place in notebook order."""
    label: str = ""


def cell_filename(step: str) -> str:
    return f"<step {step}>"


def register_source(step: str, cell_text: str) -> str:
    """Make tracebacks show the cell's lines; returns the file name used."""
    filename = cell_filename(step)
    lines = cell_text.splitlines(keepends=True)
    # mtime None: linecache.checkcache keeps the entry (there is no file to compare with)
    linecache.cache[filename] = (len(cell_text), None, lines, filename)
    return filename


def compile_cell(tree: ast.Module, filename: str, *, show_last: bool = False) -> types.CodeType:
    """Compile a cell; with ``show_last`` its last expression is displayed, as Out[] would be."""
    if show_last and tree.body and isinstance(tree.body[-1], ast.Expr):
        tree = copy.copy(tree)
        last = tree.body[-1]
        call = ast.Call(ast.Name(SHOW, ast.Load()), [last.value], [])  # type: ignore[attr-defined]
        tree.body = [*tree.body[:-1], ast.copy_location(ast.Expr(ast.copy_location(call, last)), last)]
        ast.fix_missing_locations(tree)
    code: types.CodeType = compile(tree, filename, "exec", flags=FLAGS, dont_inherit=True)
    return code


def read_inputs(bindings: tuple[Binding, ...], kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Variable name -> value from the producer steps' values; and the names a producer deleted."""
    out: dict[str, Any] = {}
    gone: set[str] = set()
    for b in bindings:
        if b.step not in kwargs:
            continue
        value = kwargs[b.step]
        if b.mode == BARE:
            out[b.var] = value
        elif b.mode == COLUMN and isinstance(value, list):
            out[b.var] = [item.get(b.var) if isinstance(item, Mapping) else item for item in value]
        elif isinstance(value, Mapping) and b.var in value:
            out[b.var] = value[b.var]
        else:
            gone.add(b.var)  # the writer deleted it, or a conditional write passed nothing on
    return out, gone


def show(value: Any) -> None:
    """A cell's last expression: displayed like Out[] (routed to the step's panel while it runs)."""
    if value is None:
        return
    if _shell() is not None:
        from IPython.display import display

        display(value)  # type: ignore[no-untyped-call]
    else:
        print(repr(value))


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance() if InteractiveShell.initialized() else None


def rebind(value: Any, namespace: dict[str, Any]) -> Any:
    """A function defined in a step cell, looking its globals up in ``namespace`` instead."""
    if not isinstance(value, types.FunctionType) or STEP_MARK not in value.__globals__:
        return value
    if value.__globals__ is namespace:
        return value
    fn = types.FunctionType(value.__code__, namespace, value.__name__, value.__defaults__, value.__closure__)
    fn.__kwdefaults__ = copy.copy(value.__kwdefaults__)
    fn.__qualname__ = value.__qualname__
    fn.__doc__ = value.__doc__
    fn.__module__ = value.__module__
    fn.__dict__.update(value.__dict__)
    fn.__annotations__ = value.__annotations__
    return fn


class CellFunction:
    """``fn(**inputs) -> outputs``: a cell step as the engine calls it.

    ``__signature__`` lists the producer steps and context names (``params``,
    ``item``...) as keyword parameters, which the flow reads as dependencies;
    ``__flownb_source__`` is the cell body (resume re-runs a step whose code
    changed); ``__flownb_reads__`` names the outputs it reads of each producer;
    ``__flownb_remote__`` gives a picklable callable and its arguments
    that run the cell from its source elsewhere (the Dask executor).
    """

    def __init__(
        self, step: str, body: str, code: types.CodeType, plan: CellPlan, bindings: tuple[Binding, ...],
        context: tuple[str, ...], info: CellInfo, namespace: Callable[[], Mapping[str, Any]],
        first_line: int, shell: Any = None,
    ) -> None:  # fmt: skip
        self.__name__ = step
        self.__qualname__ = step
        self.__module__ = "__main__"
        self.__flownb_source__ = body
        self.__flownb_cell__ = info
        params = [*plan.data, *context]
        self.__signature__ = inspect.Signature([inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in params])
        reads: dict[str, set[str]] = {}
        for b in bindings:
            reads.setdefault(b.step, set()).add(b.var)
        #: producer step -> the names this cell reads of its value (resume restores only what is read)
        self.__flownb_reads__ = {step: frozenset(names) for step, names in reads.items()}
        self.plan = plan
        self._code = code
        self._bindings = bindings
        self._namespace = namespace
        self._first_line = first_line
        self._context = context
        self._shell = shell
        self._figures = PYPLOT in plan.effects
        if shell is not None and "get_ipython" in code.co_names:
            from flownb.notebook.stepshell import preload_magics

            preload_magics(shell)  # here, on the defining thread, before steps run at once

    def _globals(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        g = dict(self._namespace())
        g["__builtins__"] = builtins
        g["__name__"] = "__main__"
        g[STEP_MARK] = self.__name__
        g[SHOW] = show
        inputs, gone = read_inputs(self._bindings, kwargs)
        for name in gone:
            g.pop(name, None)
        for name, value in inputs.items():
            g[name] = rebind(value, g)
        g.update({k: kwargs[k] for k in self._context if k in kwargs})
        if self._shell is not None:
            from flownb.notebook.stepshell import StepShell

            step_shell = StepShell(self._shell, g)
            g["get_ipython"] = lambda: step_shell
        return g

    def __call__(self, **kwargs: Any) -> Any:
        g = self._globals(kwargs)
        if self._code.co_flags & inspect.CO_COROUTINE:
            # top-level await: the python kind awaits this coroutine on the engine's loop
            return self._finish(eval(self._code, g), g)  # noqa: S307  (the user's own cell)
        try:
            exec(self._code, g)  # noqa: S102  (the user's own cell, in globals of its own)
        except NameError as exc:
            self._explain(exc)
            raise
        finally:
            if self._figures:
                flush_figures()
        return self._collect(g)

    async def _finish(self, coro: Any, g: dict[str, Any]) -> Any:
        try:
            await coro
        except NameError as exc:
            self._explain(exc)
            raise
        finally:
            if self._figures:
                flush_figures()
        return self._collect(g)

    def _collect(self, g: Mapping[str, Any]) -> Any:
        info = self.__flownb_cell__
        if info.bare:
            return g.get(self.__name__)
        return {name: g[name] for name in info.outputs if name in g}

    def _explain(self, exc: NameError) -> None:
        """A name no earlier cell defines: say which cell reads it, and which later cell writes it."""
        name = getattr(exc, "name", None)
        if not name or name not in self.plan.reads or any(b.var == name for b in self._bindings):
            return
        who = self.__flownb_cell__.label or f"step {self.__name__!r}"
        later = self.plan.late.get(name)
        hint = f" ({later} assigns it later: move that cell up, or this one down)" if later else ""
        exc.args = (f"name {name!r} is not defined: {who} reads it, and no earlier cell defines it{hint}",)

    def __flownb_remote__(self, kwargs: Mapping[str, Any]) -> tuple[Callable[..., Any], dict[str, Any]]:
        """A picklable callable that runs this cell elsewhere, and its keyword arguments
        (``{"inputs": {name: value}}``: an executor may replace a large value by a reference)."""
        inputs, _ = read_inputs(self._bindings, kwargs)
        inputs.update({k: kwargs[k] for k in self._context if k in kwargs})
        shipped = ship_globals(self._namespace(), tuple(self.plan.reads), exclude=set(inputs))
        run = functools.partial(
            run_remote, self.__name__, self.__flownb_source__, self._first_line, shipped, info=self.__flownb_cell__
        )
        return run, {"inputs": inputs}


def flush_figures() -> None:
    """Show the pyplot figures a step drew, in its panel, and close them (as Jupyter's inline
    backend does at the end of a cell). Cells that draw run one at a time (binding.py)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    from matplotlib._pylab_helpers import Gcf

    for manager in Gcf.get_all_fig_managers():
        figure = manager.canvas.figure
        if figure.get_axes() or figure.artists or figure.texts:
            show(figure)
        pyplot.close(figure)


@dataclass(frozen=True)
class ModuleRef:
    """A module travels by name and is imported again where the cell runs."""

    name: str


def ship_globals(namespace: Mapping[str, Any], reads: tuple[str, ...], *, exclude: set[str]) -> dict[str, Any]:
    """The notebook globals a cell reads that can travel to another process."""
    import cloudpickle  # type: ignore[import-untyped]

    out: dict[str, Any] = {}
    for name in reads:
        if name in exclude or name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            out[name] = ModuleRef(value.__name__)
            continue
        try:
            cloudpickle.dumps(value)
        except Exception:  # noqa: BLE001,S112  (what cannot travel stays behind; the cell says what it misses)
            continue
        out[name] = value
    return out


def run_remote(
    step: str, body: str, first_line: int, shipped: dict[str, Any], *, inputs: dict[str, Any], info: CellInfo
) -> Any:
    """Run a cell from its source (in a Dask worker, or any other process)."""
    from flownb.notebook.analysis import parse_cell

    g: dict[str, Any] = {"__builtins__": builtins, "__name__": "__main__", STEP_MARK: step, SHOW: show}
    for name, value in shipped.items():
        g[name] = importlib.import_module(value.name) if isinstance(value, ModuleRef) else value
    g.update(inputs)
    tree = parse_cell(body, step=step, first_line=first_line)
    code = compile_cell(tree, cell_filename(step), show_last=not body.rstrip().endswith(";"))
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(_await(eval(code, g)))  # noqa: S307
    else:
        exec(code, g)  # noqa: S102
    if info.bare:
        return g.get(step)
    return {name: g[name] for name in info.outputs if name in g}


async def _await(coro: Any) -> None:
    await coro
