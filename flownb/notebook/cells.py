"""The steps notebook cells define, and their registration in a flow.

A cell's dependencies depend on the other cells (which step assigns a name it
reads), and a later cell may define the step that assigns a name an earlier
one reads; so every definition, and every run, re-registers all of a flow's
cell steps under their own origin (the same origin may redefine a step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flownb.errors import FlowDefinitionError
from flownb.model import dag
from flownb.model.flow import CONTEXT_PARAMETERS, Flow
from flownb.notebook.analysis import CellAnalysis, analyze, parse_cell
from flownb.notebook.cellfn import (
    BARE,
    COLUMN,
    KEY,
    Binding,
    CellFunction,
    CellInfo,
    compile_cell,
    register_source,
)  # fmt: skip


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
    analysis: CellAnalysis = field(init=False)
    tree: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tree = parse_cell(self.body, step=self.name, first_line=self.first_line)
        self.analysis = analyze(self.tree)

    @property
    def info(self) -> CellInfo:
        outputs = self.analysis.assigns
        return CellInfo(outputs, bare=outputs == (self.name,), foreach=self.options.get("foreach") is not None)


class CellRegistry:
    """The python cell steps of one flow, in definition order."""

    def __init__(self, flow: Flow, namespace: Callable[[], Mapping[str, Any]]) -> None:
        self.flow = flow
        self.namespace = namespace
        self.cells: dict[str, CellDef] = {}

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
        before = dict(self.cells)
        self.cells.pop(cell.name, None)
        self.cells[cell.name] = cell
        try:
            self.sync()
        except Exception:
            self.cells = before
            if cell.name not in before:
                self.flow.remove(cell.name)
            self.sync()
            raise

    def forget(self, name: str) -> None:
        self.cells.pop(name, None)

    def sync(self) -> None:
        """Recompute every cell's inputs from all steps, then re-register them."""
        plan = {name: self._plan(cell) for name, cell in self.cells.items()}
        others = {n: set(s.deps) for n, s in self.flow.steps.items() if n not in self.cells}
        deps = {**others, **{n: set(p[0]) | set(_after(self.cells[n])) for n, p in plan.items()}}
        known = {n: {d for d in ds if d in deps} for n, ds in deps.items()}
        cycle = dag.find_cycle(known)
        if cycle:
            from flownb.errors import CycleError

            raise CycleError(self.flow.name, cycle)
        # remove first: replacing one at a time could pass through a cycle that the end state does not have
        for name in self.cells:
            self.flow.remove(name)
        for name, cell in self.cells.items():
            fn = plan[name][1]
            output_names = None if (cell.info.bare or cell.info.foreach) else cell.info.outputs
            self.flow.step(fn, name=name, origin=cell.origin, output_names=output_names, **cell.options)

    def producers(self) -> dict[str, list[tuple[str, str]]]:
        """Variable name -> the steps that give it, in definition order, with how to read it."""
        out: dict[str, list[tuple[str, str]]] = {}
        for name, cell in self.cells.items():
            info = cell.info
            for var in info.outputs:
                mode = BARE if info.bare else (COLUMN if info.foreach else KEY)
                out.setdefault(var, []).append((name, mode))
        return out

    def _plan(self, cell: CellDef) -> tuple[list[str], CellFunction]:
        producers = self.producers()
        steps = set(self.flow.steps) | set(self.cells)
        namespace = self.namespace()
        bindings: list[Binding] = []
        deps: list[str] = []
        context: list[str] = []
        for var in cell.analysis.reads:
            given = [(s, m) for s, m in producers.get(var, []) if s != cell.name]
            if given:
                for s, _ in given:
                    if s not in deps:
                        deps.append(s)
                step, mode = given[-1]  # several cells assign it: the latest definition wins
                bindings.append(Binding(var, step, mode))
            elif var in steps and var != cell.name:
                deps.append(var) if var not in deps else None
                bindings.append(Binding(var, var, BARE))
            elif var in CONTEXT_PARAMETERS and _context_applies(var, cell, namespace):
                context.append(var)
        filename = register_source(cell.name, cell.cell_text)
        code = compile_cell(cell.tree, filename)
        fn = CellFunction(
            cell.name, cell.body, code, tuple(deps + context), tuple(bindings), cell.info,
            self.namespace, cell.analysis.reads, cell.first_line,
        )  # fmt: skip
        return deps, fn


def _context_applies(var: str, cell: CellDef, namespace: Mapping[str, Any]) -> bool:
    if var == "params":
        return True
    if var in ("item", "index"):
        return cell.options.get("foreach") is not None
    return var not in namespace  # "run": unless the notebook has its own variable of that name


def _after(cell: CellDef) -> list[str]:
    after = cell.options.get("after") or ()
    return [after] if isinstance(after, str) else list(after)


def _check_options(cell: CellDef) -> None:
    """Validate the step's options on a scratch flow, so a bad option changes nothing."""
    scratch = Flow("check")

    def probe() -> None:
        return None

    options = {k: v for k, v in cell.options.items() if k != "after"}
    scratch.step(probe, name=cell.name, origin=cell.origin, **options)
