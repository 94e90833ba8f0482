"""Notebook order into dependencies: versioned names, mutations, hidden state (DESIGN §3a).

Cells have an order (the notebook's). Every write of a name makes a new version
of it, as in SSA: a read binds to the *nearest earlier* cell that writes the
name, never to a later one, so re-assigning a name never makes a cycle. On top
of the data edges this adds order-only edges, each for a reason the data cannot
show:

* **write after read**: a cell that changes ``x`` in place starts only after
  every earlier cell that reads the version it changes has finished;
* **hidden state**: cells that touch the same effect key (pyplot, the global
  RNGs after a seed, one file, the environment) run in notebook order; a
  barrier (``os.chdir``, ``%cd``, an unknown magic) runs after every earlier
  cell and before every later one;
* ``--after`` by hand, and ``in_order`` (every step cell after the previous one).

Where the analysis cannot be sure it adds an edge: a wrong edge costs
parallelism, a missing one correctness.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flownb.errors import FlowDefinitionError
from flownb.notebook.analysis import (
    ANY_FILE,
    BARRIER,
    MUTATING_METHODS,
    PLOT_ATTRS,
    PURE_FUNCTIONS,
    PURE_MODULES,
    PYPLOT,
    PYPLOT_MODULES,
    RANDOM_CALLS,
    RNG,
    RNG_CONSTRUCTORS,
    RNG_MODULES,
    SEEDS,
    CallSite,
    CellAnalysis,
    FunctionSummary,
)

#: how a cell reads a variable from its producer step's value
KEY, BARE = "key", "bare"
_FITS = frozenset({"fit", "fit_transform", "fit_predict", "partial_fit", "fit_resample"})


@dataclass(frozen=True)
class Node:
    """A step cell in notebook order. ``analysis`` is None for steps of other kinds."""

    step: str
    label: str
    """How messages name the cell: ``cell [3] (step c3)``."""
    analysis: CellAnalysis | None
    after: tuple[str, ...] = ()
    kind: str = "python"


@dataclass(frozen=True)
class Binding:
    """Variable ``var`` comes from step ``step``'s value (its ``var`` entry, or the value itself)."""

    var: str
    step: str
    mode: str = KEY


@dataclass
class CellPlan:
    """What one python cell reads from whom, what it waits for, and what it gives."""

    step: str
    bindings: list[Binding] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    """Steps whose values it reads, in order of first read."""
    order: list[str] = field(default_factory=list)
    """Steps it waits for without reading their values."""
    outputs: tuple[str, ...] = ()
    """Names it gives: what it assigns, deletes or changes in place."""
    deletes: frozenset[str] = frozenset()
    late: dict[str, str] = field(default_factory=dict)
    """Names it reads that no earlier cell writes but a later one does: name -> that cell's label."""
    effects: frozenset[str] = frozenset()
    reads: frozenset[str] = frozenset()
    """Every name it may read (directly, through functions it calls, passed through)."""


@dataclass
class Plan:
    cells: dict[str, CellPlan]
    final: dict[str, str]
    """Variable -> the step that writes its final version (the last writer in notebook order)."""
    order: list[str]


def bind(
    nodes: Sequence[Node], *, external: Mapping[str, Any], namespace: Mapping[str, Any], in_order: bool = False
) -> Plan:
    """Resolve a notebook's step cells, in order, into dependencies.

    ``external`` holds steps that are not cells (``@flow.step`` functions):
    a read of such a step's name binds to it when no earlier cell writes it.
    ``namespace`` is the notebook's: a name no earlier cell writes comes from it
    when the step runs (and it tells which names are modules).
    """
    return _Binder(nodes, external, namespace).run(in_order=in_order)


class _Binder:
    def __init__(self, nodes: Sequence[Node], external: Mapping[str, Any], namespace: Mapping[str, Any]) -> None:
        self.nodes = list(nodes)
        self.index = {n.step: i for i, n in enumerate(self.nodes)}
        self.external = external
        self.namespace = namespace
        #: per cell: names it writes (assigns, deletes, mutates), in order
        self.writes: list[dict[str, None]] = []
        self.functions: list[dict[str, FunctionSummary]] = []
        self.modules: list[dict[str, str]] = []
        self.random_makers: list[frozenset[str]] = []
        self.file_handles: list[Mapping[str, frozenset[str]]] = []
        #: (var, writer index or -1 for the namespace) -> indexes of cells reading that version
        self.readers: dict[tuple[str, int], list[int]] = {}
        self.plans: dict[str, CellPlan] = {}

    def run(self, *, in_order: bool) -> Plan:
        seeded = False
        effects: list[frozenset[str]] = []
        for i, node in enumerate(self.nodes):
            if node.analysis is None:
                self._other_kind(node)
                effects.append(frozenset({ANY_FILE}) if node.kind == "shell" else frozenset())
                continue
            plan, cell_effects, seeds = self._cell(i, node, node.analysis)
            seeded = seeded or seeds
            if not seeded:
                cell_effects = cell_effects - {RNG}  # draws are not reproducible anyway before a seed
            plan.effects = cell_effects
            effects.append(cell_effects)
            self.plans[node.step] = plan
        self._order_effects(effects)
        if in_order:
            for prev, node in zip(self.nodes, self.nodes[1:], strict=False):
                self._wait(node.step, prev.step)
        self._after()
        final: dict[str, str] = {}
        for i, node in enumerate(self.nodes):
            for var in self.writes[i]:
                final[var] = node.step
        return Plan(self.plans, final, [n.step for n in self.nodes])

    # -- one cell ----------------------------------------------------------------------------

    def _other_kind(self, node: Node) -> None:
        self.writes.append({node.step: None})
        self.functions.append({})
        self.modules.append({})
        self.random_makers.append(frozenset())
        self.file_handles.append({})

    def _cell(self, i: int, node: Node, a: CellAnalysis) -> tuple[CellPlan, frozenset[str], bool]:
        plan = self.plans[node.step] = CellPlan(node.step)
        own_modules = a.modules
        writes: dict[str, None] = dict.fromkeys(a.writes)
        mutates = set(a.mutates)
        hard = list(a.reads)
        soft = set(a.soft_reads) | set(a.conditional)
        effects = set(a.effects)
        seeds = self._touches(i, a.calls, a.roots, own_modules, effects, mutates)
        mutates = {m for m in mutates if not m.startswith("_") and not self._is_module(m, i, own_modules)}
        # functions the cell calls (or passes on) read and change globals when they run
        local_functions = dict(a.functions)
        used = set(hard) | soft | mutates | set(a.roots)
        seen: set[str] = set()
        while used - seen:
            name = (used - seen).pop()
            seen.add(name)
            summary = local_functions.get(name) if name in a.roots else None
            if summary is None and name not in writes:
                writer = self._writer(name, i)
                summary = self.functions[writer].get(name) if writer is not None else None
            if summary is None:
                continue
            soft |= summary.free
            mutates |= summary.mutates | summary.global_writes
            used |= summary.free
            effects |= summary.effects
            # what the function's own calls touch, with names as they are where it is called
            seeds = self._touches(i, summary.calls, summary.roots, own_modules, effects, None) or seeds
        for var in mutates:
            writes.setdefault(var, None)
        plan.deletes = a.deletes
        plan.outputs = tuple(writes)
        reads = [*hard, *sorted((soft | mutates) - set(hard))]
        for var in reads:
            self._bind(i, node, plan, var, hard=var in hard and var not in soft)
        # write after read: nobody still reading the version this cell changes sees it change
        for var in mutates:
            writer = self._writer(var, i)
            for reader in self.readers.get((var, -1 if writer is None else writer), ()):
                if reader != i:
                    self._wait(node.step, self.nodes[reader].step)
        self.writes.append(writes)
        self.functions.append(local_functions)
        self.modules.append(dict(own_modules))
        self.random_makers.append(a.random_makers)
        self.file_handles.append(a.file_handles)
        plan.reads = frozenset(reads)
        return plan, frozenset(effects), seeds

    def _bind(self, i: int, node: Node, plan: CellPlan, var: str, *, hard: bool) -> None:
        writer = self._writer(var, i)
        self.readers.setdefault((var, -1 if writer is None else writer), []).append(i)
        if writer is not None:
            step = self.nodes[writer].step
            mode = BARE if self.nodes[writer].analysis is None else KEY
            plan.bindings.append(Binding(var, step, mode))
            if step not in plan.data:
                plan.data.append(step)
            return
        if var in self.external and var != node.step:
            plan.bindings.append(Binding(var, var, BARE))
            if var not in plan.data:
                plan.data.append(var)
            return
        if hard:
            later = next((n for n in self.nodes[i + 1 :] if n.analysis is not None and var in n.analysis.writes), None)
            if later is not None:
                plan.late[var] = later.label

    def _touches(
        self, i: int, calls: Sequence[CallSite], roots: Iterable[str], own_modules: Mapping[str, str],
        effects: set[str], mutates: set[str] | None,
    ) -> bool:
        """Add what these calls touch to ``effects`` (and the names they may change to ``mutates``,
        unless None); True when one of them seeds a global RNG."""
        seeds = False
        for call in calls:
            mod = own_modules.get(call.root) if call.root in own_modules else self._module(call.root, i)
            path = ".".join([mod, *call.attrs]) if mod else ""
            last = call.attrs[-1] if call.attrs else call.root
            if mod is not None:
                if mod.startswith(PYPLOT_MODULES):
                    effects.add(PYPLOT)
                if path.startswith(RNG_MODULES) and last not in RNG_CONSTRUCTORS:
                    effects.add(RNG)
                    seeds = seeds or last in SEEDS
                pure = mod.startswith(PURE_MODULES) or last in PURE_FUNCTIONS
                if mutates is not None and call.statement and not pure:
                    mutates |= {x for x in call.args if not self._is_module(x, i, own_modules)}
            elif not call.attrs:
                if mutates is not None and call.statement and call.root not in PURE_FUNCTIONS:
                    mutates |= {x for x in call.args if not self._is_module(x, i, own_modules)}
            else:
                changes = call.inplace or any(m in MUTATING_METHODS for m in call.attrs)
                if mutates is not None and not call.local and (changes or (call.statement and not call.pure_chain)):
                    mutates.add(call.root)
                if any(attr in PLOT_ATTRS for attr in call.attrs):
                    effects.add(PYPLOT)
                if last in ("sample", "shuffle") and not call.random_state:
                    effects.add(RNG)
                writer = self._writer(call.root, i)
                if writer is not None and call.root in self.random_makers[writer] and _FITS & set(call.attrs):
                    effects.add(RNG)
            if last in RANDOM_CALLS and not call.random_state:
                effects.add(RNG)
        for root in roots:
            mod = own_modules.get(root) if root in own_modules else self._module(root, i)
            if mod is not None and mod.startswith(PYPLOT_MODULES):
                effects.add(PYPLOT)
            writer = self._writer(root, i)
            if writer is not None:  # a file handle made by an earlier cell: using it touches its file
                effects |= self.file_handles[writer].get(root, frozenset())
        return seeds

    # -- lookups -------------------------------------------------------------------------------

    def _writer(self, var: str, before: int) -> int | None:
        """The nearest cell before ``before`` that writes ``var``."""
        for j in range(before - 1, -1, -1):
            if var in self.writes[j]:
                return j
        return None

    def _module(self, name: str, before: int) -> str | None:
        """The module (or ``module.attr``) ``name`` holds at this point of the notebook, if any."""
        writer = self._writer(name, before)
        if writer is not None:
            return self.modules[writer].get(name)
        value = self.namespace.get(name)
        if isinstance(value, types.ModuleType):
            return value.__name__
        module = getattr(value, "__module__", None)
        if callable(value) and isinstance(module, str) and not module.startswith("__main__"):
            return f"{module}.{getattr(value, '__name__', name)}"
        return None

    def _is_module(self, name: str, before: int, own: Mapping[str, str]) -> bool:
        """``name`` holds a module or a function imported from one (never data a call could change)."""
        return (own.get(name) if name in own else self._module(name, before)) is not None

    # -- order-only edges --------------------------------------------------------------------------

    def _wait(self, step: str, on: str) -> None:
        plan = self.plans.get(step)
        if plan is None or on == step or on in plan.data or on in plan.order:
            return
        plan.order.append(on)

    def _order_effects(self, effects: list[frozenset[str]]) -> None:
        """Cells that share hidden state run in notebook order (see the module docstring)."""
        barrier: int | None = None
        for i, keys in enumerate(effects):
            step = self.nodes[i].step
            if barrier is not None:
                self._wait(step, self.nodes[barrier].step)
            if BARRIER in keys:
                for j in range((barrier or -1) + 1, i):
                    self._wait(step, self.nodes[j].step)
                barrier = i
                continue
            for key in keys:
                for j in _nearest_conflicts(effects, i, key):
                    self._wait(step, self.nodes[j].step)

    def _after(self) -> None:
        for i, node in enumerate(self.nodes):
            for on in node.after:
                j = self.index.get(on)
                if j is not None and j > i:
                    raise FlowDefinitionError(
                        f"{node.label} runs --after {on!r}, but {self.nodes[j].label} comes later in the notebook; "
                        f"move one of the cells, or remove --after"
                    )
                self._wait(node.step, on)


def _nearest_conflicts(effects: list[frozenset[str]], i: int, key: str) -> list[int]:
    """The earlier cells that ``key`` of cell ``i`` must follow (the nearest of each kind)."""
    out: list[int] = []
    if key == ANY_FILE:
        files_seen: set[str] = set()
        for j in range(i - 1, -1, -1):
            if ANY_FILE in effects[j]:
                out.append(j)
                break
            fresh = {k for k in effects[j] if k.startswith("file:")} - files_seen
            if fresh:
                out.append(j)
                files_seen |= fresh
        return out
    for j in range(i - 1, -1, -1):
        if key in effects[j] or (key.startswith("file:") and ANY_FILE in effects[j]):
            return [j]
    return out


def label(step: str, number: int | None) -> str:
    return f"cell [{number}] (step {step})" if number is not None else f"step {step!r}"
