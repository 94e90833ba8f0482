"""The step cells of a notebook, in notebook order, and their registration in a flow.

A cell's dependencies depend on the cells before it (DESIGN §3a), so every
definition, and every run, binds all of a flow's cells again (binding.py) and
re-registers the python cells under their own origin (the same origin may
redefine a step). Notebook order is the notebook document's order: headless,
cells are defined in file order; in a kernel, the saved notebook gives each
cell's place by its cell id when it can (``positions``), and otherwise cells
keep the order in which they were first defined.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flownb.api import Flow
from flownb.errors import FlowDefinitionError
from flownb.model.flow import CONTEXT_PARAMETERS
from flownb.notebook.analysis import CellAnalysis, analyze, parse_cell
from flownb.notebook.binding import BARE, Binding, CellPlan, Node, Plan, bind, label
from flownb.notebook.cellfn import COLUMN, CellFunction, CellInfo, compile_cell, register_source

#: cell id -> (place in the saved notebook, the code cell's number as the user sees it)
Positions = Mapping[str, tuple[int, int]]


@dataclass
class CellDef:
    """A ``%%step`` cell (python kind) as last defined."""

    name: str
    body: str
    cell_text: str
    origin: tuple[str, ...]
    options: dict[str, Any]
    """``flow.step`` keyword options (after, retries, timeout, when, foreach...)."""
    first_line: int = 2
    number: int | None = None
    """The code cell's number in the notebook ([3] for the third code cell), when known."""
    analysis: CellAnalysis = field(init=False)
    tree: ast.Module = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tree = parse_cell(self.body, step=self.name, first_line=self.first_line)
        self.analysis = analyze(self.tree, source=self.body)

    @property
    def after(self) -> tuple[str, ...]:
        after = self.options.get("after") or ()
        return (after,) if isinstance(after, str) else tuple(after)


@dataclass
class KindCell:
    """A ``%%step NAME --kind K`` cell (shell, http, approval...): its place in the order."""

    name: str
    kind: str
    origin: tuple[str, ...]
    number: int | None = None


class CellRegistry:
    """The step cells of one flow, in notebook order."""

    def __init__(
        self, flow: Flow, namespace: Callable[[], Mapping[str, Any]], *, shell: Any = None,
        positions: Callable[[], Positions] | None = None,
    ) -> None:  # fmt: skip
        self.flow = flow
        self.namespace = namespace
        self.shell = shell
        self.positions = positions
        self.cells: dict[str, CellDef] = {}
        self.kinds: dict[str, KindCell] = {}
        #: every step cell by name, in the order first defined
        self.defined: list[str] = []
        self.in_order = False
        self.plan: Plan | None = None

    # -- definitions ------------------------------------------------------------------------

    def define(self, cell: CellDef) -> None:
        """Add or replace a cell step and re-register them all; on error nothing changes."""
        taken = self.flow.steps.get(cell.name)
        if taken is not None and taken.origin != cell.origin:
            where = "another cell" if taken.origin[:1] == ("cell",) else "a function or call"
            raise FlowDefinitionError(
                f"step name {cell.name!r} is already taken in flow {self.flow.name!r} by {where}; "
                f"choose another name, or %flow reset first"
            )
        _check_options(cell)
        saved = (dict(self.cells), dict(self.kinds), list(self.defined))
        renamed = self._same_cell(cell.origin, cell.name)
        self._place(cell.name, renamed)
        self.kinds.pop(cell.name, None)
        self.cells[cell.name] = cell
        try:
            self.sync()
        except Exception:
            self.cells, self.kinds, self.defined = saved
            if cell.name not in saved[0] and cell.name not in saved[1]:
                self.flow.remove(cell.name)
            self.sync()
            raise
        if renamed is not None:
            self.flow.remove(renamed)

    def define_kind(self, cell: KindCell) -> None:
        """Note a step cell of another kind (registered by the caller) and its place."""
        renamed = self._same_cell(cell.origin, cell.name)
        self._place(cell.name, renamed)
        self.cells.pop(cell.name, None)
        self.kinds[cell.name] = cell
        if renamed is not None:
            self.flow.remove(renamed)

    def _same_cell(self, origin: tuple[str, ...], name: str) -> str | None:
        """Another step defined earlier by this very cell (it was renamed): it is replaced."""
        if len(origin) < 2 or origin[1] == name:
            return None
        for other in self.defined:
            if other != name and self._origin(other) == origin:
                return other
        return None

    def _origin(self, name: str) -> tuple[str, ...]:
        cell = self.cells.get(name) or self.kinds.get(name)
        return cell.origin if cell is not None else ()

    def _place(self, name: str, renamed: str | None) -> None:
        if name in self.defined:
            return
        if renamed is not None:
            self.defined[self.defined.index(renamed)] = name
            self.cells.pop(renamed, None)
            self.kinds.pop(renamed, None)
        else:
            self.defined.append(name)

    def forget(self, name: str) -> None:
        self.cells.pop(name, None)
        self.kinds.pop(name, None)
        if name in self.defined:
            self.defined.remove(name)

    def clear(self) -> None:
        self.cells.clear()
        self.kinds.clear()
        self.defined.clear()
        self.plan = None

    # -- order and binding ----------------------------------------------------------------------

    def ordered(self) -> list[str]:
        """Step cells in notebook order (see the module docstring)."""
        names = [n for n in self.defined if n in self.cells or n in self.kinds]
        where = self.positions() if self.positions is not None else {}
        place: dict[str, int] = {}
        for name in names:
            origin = self._origin(name)
            found = where.get(origin[1]) if len(origin) > 1 else None
            if found is not None:
                place[name] = found[0]
                self._number(name, found[1])
        if not place:
            return names
        # cells the saved notebook does not know yet follow the cell defined just before them
        heads: list[str] = []
        following: dict[str, list[str]] = {}
        previous: str | None = None
        for name in names:
            if name in place:
                previous = name
            elif previous is None:
                heads.append(name)
            else:
                following.setdefault(previous, []).append(name)
        out = list(heads)
        for name in sorted(place, key=place.__getitem__):
            out.append(name)
            out.extend(following.get(name, ()))
        return out

    def _number(self, name: str, number: int) -> None:
        cell = self.cells.get(name) or self.kinds.get(name)
        if cell is not None:
            cell.number = number

    def sync(self, *, snapshot: Mapping[str, Any] | None = None) -> Plan:
        """Bind every cell again, then re-register the python cells; returns the plan.

        ``snapshot`` is the notebook namespace a run starts from: the steps of
        that run read the names no earlier cell writes from it, not from the
        live namespace that later cells (and published outputs) keep changing.
        """
        order = self.ordered()
        nodes = []
        for name in order:
            cell = self.cells.get(name)
            if cell is not None:
                nodes.append(Node(name, label(name, cell.number), cell.analysis, cell.after))
            else:
                kind = self.kinds[name]
                nodes.append(Node(name, label(name, kind.number), None, (), kind.kind))
        ours = set(order)
        external = {n: s for n, s in self.flow.steps.items() if n not in ours}
        namespace = snapshot if snapshot is not None else self.namespace()
        plan = bind(nodes, external=external, namespace=namespace, in_order=self.in_order or self.flow.in_order)
        frozen: Mapping[str, Any] = snapshot if snapshot is not None else {}
        functions = {
            name: self._function(name, plan, index, (lambda: frozen) if snapshot is not None else self.namespace)
            for index, name in enumerate(order) if name in self.cells
        }  # fmt: skip
        # remove first: replacing one at a time could pass through a cycle that the end state does not have
        for name in functions:
            self.flow.remove(name)
        for name, (fn, info) in functions.items():
            options = {k: v for k, v in self.cells[name].options.items() if k != "after"}
            output_names = None if (info.bare or info.foreach) else info.outputs
            self.flow.step(
                fn, name=name, origin=self.cells[name].origin, output_names=output_names,
                after=plan.cells[name].order, **options,
            )  # fmt: skip
        self.plan = plan
        return plan

    def _function(
        self, name: str, plan: Plan, position: int, namespace: Callable[[], Mapping[str, Any]]
    ) -> tuple[CellFunction, CellInfo]:
        cell = self.cells[name]
        cp: CellPlan = plan.cells[name]
        foreach = cell.options.get("foreach") is not None
        bare = cp.outputs == (name,) and not foreach
        info = CellInfo(
            cp.outputs, bare, foreach, frozenset(v for v, s in plan.final.items() if s == name), cp.deletes,
            position, label(name, cell.number),
        )  # fmt: skip
        bindings = tuple(self._mode(b, plan) for b in cp.bindings)
        context = tuple(
            var for var in cp.reads
            if var in CONTEXT_PARAMETERS and not any(b.var == var for b in bindings)
            and _context_applies(var, cell, namespace())
        )  # fmt: skip
        filename = register_source(name, cell.cell_text)
        code = compile_cell(cell.tree, filename, show_last=cell.analysis.last_expr)
        fn = CellFunction(
            name, cell.body, code, cp, bindings, context, info, namespace, cell.first_line, self.shell,
        )  # fmt: skip
        return fn, info

    def _mode(self, b: Binding, plan: Plan) -> Binding:
        """How a variable is read from its producer: the value itself, a key, or a foreach column."""
        producer = self.cells.get(b.step)
        if producer is None:
            return b if b.mode == BARE or b.step not in self.kinds else Binding(b.var, b.step, BARE)
        if producer.options.get("foreach") is not None:
            return Binding(b.var, b.step, COLUMN)
        if plan.cells[b.step].outputs == (b.step,):
            return Binding(b.var, b.step, BARE)
        return b

    def cell_info(self, name: str) -> CellInfo | None:
        spec = self.flow.steps.get(name)
        info = getattr(spec.fn, "__flownb_cell__", None) if spec is not None else None
        return info if isinstance(info, CellInfo) else None


def _context_applies(var: str, cell: CellDef, namespace: Mapping[str, Any]) -> bool:
    if var in ("item", "index"):
        return cell.options.get("foreach") is not None
    return var == "params" or var not in namespace  # "run": unless the notebook has a variable of that name


def _check_options(cell: CellDef) -> None:
    """Validate the step's options on a scratch flow, so a bad option changes nothing."""
    scratch = Flow("check")

    def probe() -> None:
        return None

    options = {k: v for k, v in cell.options.items() if k != "after"}
    scratch.step(probe, name=cell.name, origin=cell.origin, **options)
