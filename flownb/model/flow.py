"""A flow's definition: a named set of steps, validated into a graph and a plan.

``FlowDefinition`` is the model: it registers steps, checks them, and makes the
:class:`RunPlan` the engine runs. It starts nothing and draws nothing; the
public :class:`flownb.Flow` (flownb/api.py) adds ``run``, ``resume`` and
``show`` on top, so the model imports no layer above it.
"""

from __future__ import annotations

import inspect
import keyword
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from flownb.errors import FlowDefinitionError, TemplateError
from flownb.model import dag, templates
from flownb.model.hashing import code_hash, digest
from flownb.model.kinds import KindLookup, check_options
from flownb.model.spec import BACKOFFS, ON_FAILURE, TRIGGER_RULES, RetryPolicy, StepSpec

Durability = Literal["sync", "async"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: parameter names that are not dependencies but values the engine provides
CONTEXT_PARAMETERS = frozenset({"params", "item", "index", "run"})


_Checked = tuple[dict[str, frozenset[str]], dict[str, set[str]], list[str]]


class Graph:
    """A validated snapshot of a flow's steps, as the engine runs them."""

    def __init__(self, flow: str, specs: dict[str, StepSpec], checked: _Checked | None = None) -> None:
        """``checked``: the edges of all ``specs`` and their topological order, as
        validation found them (they serve as they are when no step is a fallback)."""
        self.flow = flow
        self.specs = specs
        fallbacks = {s.fallback for s in specs.values() if isinstance(s.fallback, str)}
        if checked is not None and not fallbacks:
            self.deps, self.dependents, order = checked
            self.levels = dag.levels(self.deps, order=order)
        else:
            # steps that run only in place of a failed step are not scheduled on their own
            self.deps = {n: s.deps for n, s in specs.items() if n not in fallbacks}
            self.dependents = dag.dependents_of(self.deps)
            self.levels = dag.levels(self.deps, self.dependents)
        self.hash = digest(*(f"{n}:{specs[n].code_hash}" for n in sorted(specs)))
        self._shape: dict[str, dict[str, Any]] | None = None
        self._fresh: tuple[tuple[str, ...], dict[str, int]] | None = None

    def fresh_start(self) -> tuple[tuple[str, ...], dict[str, int]]:
        """How a run with nothing done yet begins: the steps without dependencies (sorted,
        the order they start in) and how many dependencies each other step waits for.
        Worked out once per graph: a flow run again and again schedules from this copy."""
        if self._fresh is None:
            roots = tuple(sorted(n for n, d in self.deps.items() if not d))
            self._fresh = (roots, {n: len(d) for n, d in self.deps.items() if d})
        return self._fresh

    def shape(self) -> dict[str, dict[str, Any]]:
        """Each step's kind and dependencies, as a run records them when it starts.

        The dependencies are tuples (JSON arrays once recorded): a dict holding only
        strings and tuples of strings is left alone by the garbage collector, which
        would otherwise walk two containers a step for as long as the graph lives."""
        if self._shape is None:
            self._shape = {
                n: {"kind": s.kind, "deps": tuple(sorted(s.deps)) if s.deps else ()}
                for n, s in self.specs.items()
            }
        return self._shape


@dataclass(frozen=True)
class RunPlan:
    """What the engine needs to run a flow: its validated graph and its settings.

    The engine takes a plan, never a ``Flow``: a run goes on with the steps and
    settings it started with, whatever is redefined meanwhile.
    """

    name: str
    graph: Graph
    max_concurrency: int = 8
    durability: str = "sync"
    executor: Any = None
    max_runs: int | None = None
    db: Any = None
    kinds: KindLookup | None = None
    """Where the engine finds a kind it runs on its own (a callable fallback runs as python)."""


def recorded_graph(flow: str, steps: Mapping[str, Any]) -> Graph:
    """The graph a run recorded when it started (kinds and edges, no code): for
    pictures of runs whose flow this process does not define."""
    specs = {
        name: StepSpec(name, str(info.get("kind", "python")), None, (), frozenset(info.get("deps", ())), {})
        for name, info in steps.items()
    }
    known = set(specs)
    for spec in specs.values():
        spec.deps = frozenset(d for d in spec.deps if d in known)
    return Graph(flow, specs)


class FlowDefinition:
    """A durable workflow's definition: steps with dependencies, checked as they are added.

    ``kinds`` looks step kinds up (``flownb.steps.registry.get_kind``); the public
    ``flownb.Flow`` passes it.
    """

    def __init__(
        self,
        name: str,
        *,
        db: str | None = None,
        max_concurrency: int = 8,
        durability: Durability = "sync",
        executor: Any = None,
        max_runs: int | None = None,
        in_order: bool = False,
        kinds: KindLookup | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise FlowDefinitionError("a flow needs a non-empty name, e.g. Flow('etl')")
        if durability not in ("sync", "async"):
            raise FlowDefinitionError(
                f"flow {name!r}: durability must be 'sync' or 'async', not {durability!r}"
            )
        if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
            raise FlowDefinitionError(f"flow {name!r}: max_concurrency must be a positive integer")
        if max_runs is not None and (not isinstance(max_runs, int) or isinstance(max_runs, bool) or max_runs < 1):
            raise FlowDefinitionError(f"flow {name!r}: max_runs must be a positive integer or None")
        self.name = name
        self.db = db
        self.max_concurrency = max_concurrency
        self.durability: Durability = durability
        self.executor = executor
        self.max_runs = max_runs
        self._in_order = bool(in_order)
        self._kinds = kinds
        self._specs: dict[str, StepSpec] = {}
        #: the last validated snapshot, until a step is added or removed
        self._graph: Graph | None = None
        #: name -> steps that depend on it (or may, by an optional input)
        self._wanted_by: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}: {len(self._specs)} steps>"

    @property
    def in_order(self) -> bool:
        """Every step waits for the one defined before it (notebook cells: the cell above it)."""
        return self._in_order

    @in_order.setter
    def in_order(self, value: bool) -> None:
        self._in_order = bool(value)
        self._graph = None

    # -- definition -------------------------------------------------------

    def step(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        kind: str = "python",
        after: Iterable[str] | str = (),
        retries: int = 0,
        backoff: str = "exponential",
        retry_delay: float = 1.0,
        max_delay: float = 60.0,
        jitter: float = 0.0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None,
        when: str | None = None,
        foreach: str | None = None,
        concurrency: int | None = None,
        repeat_until: str | None = None,
        max_iterations: int = 100,
        on_failure: str = "stop",
        fallback: str | Callable[..., Any] | None = None,
        cache: bool = False,
        trigger_rule: str = "all_succeeded",
        max_failures: int | float = 0,
        origin: tuple[str, ...] | None = None,
        output_names: tuple[str, ...] | None = None,
        **kind_options: Any,
    ) -> Any:
        """Register a step: ``@flow.step``, ``@flow.step(retries=3)``, or
        ``flow.step(name="x", kind="shell", command="...")`` for other kinds."""
        settings = dict(
            name=name, kind=kind, after=after, retries=retries, backoff=backoff,
            retry_delay=retry_delay, max_delay=max_delay, jitter=jitter, retry_on=retry_on,
            timeout=timeout, when=when, foreach=foreach, concurrency=concurrency,
            repeat_until=repeat_until, max_iterations=max_iterations, on_failure=on_failure,
            fallback=fallback, cache=cache, trigger_rule=trigger_rule, max_failures=max_failures,
            origin=origin, output_names=output_names,
        )  # fmt: skip
        if fn is None and kind == "python":

            def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
                self._register(f, settings, kind_options)
                return f

            return decorate
        if fn is not None and not callable(fn):
            raise FlowDefinitionError(f"flow.step takes a function, not {type(fn).__name__}")
        return self._register(fn, settings, kind_options)

    def shell(self, name: str, command: str, **options: Any) -> StepSpec:
        """A shell step: ``command`` is a bash script; template values are quoted."""
        return self._kind_step(name, "shell", command=command, **options)

    def http(self, name: str, url: str, **options: Any) -> StepSpec:
        return self._kind_step(name, "http", url=url, **options)

    def agent(self, name: str, prompt: str, **options: Any) -> StepSpec:
        return self._kind_step(name, "agent", prompt=prompt, **options)

    def wasm(self, name: str, module: str, **options: Any) -> StepSpec:
        return self._kind_step(name, "wasm", module=module, **options)

    def approval(self, name: str, message: str = "Approve {{ run.flow }}?", **options: Any) -> StepSpec:
        return self._kind_step(name, "approval", message=message, **options)

    def subflow(self, name: str, flow: FlowDefinition, **options: Any) -> StepSpec:
        return self._kind_step(name, "subflow", flow=flow, **options)

    def _kind_step(self, name: str, kind: str, **options: Any) -> StepSpec:
        """Register a step of another kind: common options apart, the rest are the kind's."""
        return cast(StepSpec, self._register(None, _split(name, kind, options), _kind_only(options)))

    def remove(self, name: str) -> None:
        """Forget a step (``%flow reset`` forgets them all)."""
        spec = self._specs.pop(name, None)
        self._graph = None
        if spec is not None:
            self._unindex(spec)

    def clear(self) -> None:
        self._specs.clear()
        self._graph = None
        self._wanted_by.clear()

    @property
    def steps(self) -> dict[str, StepSpec]:
        """The registered steps by name (a copy)."""
        return dict(self._specs)

    def _register(
        self, fn: Callable[..., Any] | None, s: dict[str, Any], kind_options: dict[str, Any]
    ) -> Any:
        kind_name: str = s["kind"]
        name = s["name"] or (getattr(fn, "__name__", None) if fn is not None else None)
        if not name:
            raise FlowDefinitionError(f"a {kind_name} step needs a name: flow.step(name=..., kind={kind_name!r})")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise FlowDefinitionError(
                f"step name {name!r} is not an identifier; use letters, digits and _"
            )
        # a step's name becomes a Python name (a function parameter, a notebook variable)
        if keyword.iskeyword(name):
            raise FlowDefinitionError(f"step name {name!r} is a Python keyword; choose another name")
        if name.startswith("__"):
            raise FlowDefinitionError(
                f"step name {name!r} starts with __, which is reserved for Python; choose another name"
            )
        if name in CONTEXT_PARAMETERS:
            raise FlowDefinitionError(f"step name {name!r} is reserved; choose another name")
        if self._kinds is None:
            raise FlowDefinitionError(f"flow {self.name!r} knows no step kinds ({kind_name!r}); use flownb.Flow")
        kind = self._kinds(kind_name, name)
        if kind_name == "python":
            if fn is None:
                raise FlowDefinitionError(f"python step {name!r} needs a function")
            if kind_options:
                raise FlowDefinitionError(
                    f"python step {name!r} got unknown option(s) {', '.join(sorted(kind_options))}"
                )
            options: dict[str, Any] = {}
        else:
            options = check_options(kind, name, kind_options)
        spec = self._build_spec(name, kind_name, fn, s, options, kind.references(options))
        spec.handler = kind
        self._admit(spec)
        return fn if fn is not None else spec

    def _build_spec(
        self, name: str, kind: str, fn: Callable[..., Any] | None, s: dict[str, Any],
        options: dict[str, Any], refs: set[str],
    ) -> StepSpec:  # fmt: skip
        where = f"step {name!r} of flow {self.name!r}"
        retry = _retry_policy(where, s)
        if s["timeout"] is not None and not (_is_number(s["timeout"]) and s["timeout"] > 0):
            raise FlowDefinitionError(
                f"{where}: timeout must be a positive number of seconds, finite (None for no timeout), "
                f"not {s['timeout']!r}"
            )
        if s["concurrency"] is not None and not (_is_int(s["concurrency"]) and s["concurrency"] >= 1):
            raise FlowDefinitionError(
                f"{where}: concurrency must be a positive integer (or None), not {s['concurrency']!r}"
            )
        if not (_is_int(s["max_iterations"]) and s["max_iterations"] >= 1):
            raise FlowDefinitionError(
                f"{where}: max_iterations must be a positive integer, not {s['max_iterations']!r}"
            )
        if s["on_failure"] not in ON_FAILURE:
            raise FlowDefinitionError(f"{where}: on_failure must be 'stop' or 'continue', not {s['on_failure']!r}")
        if s["fallback"] == name:
            raise FlowDefinitionError(f"{where}: a step cannot be its own fallback")
        if s["trigger_rule"] not in TRIGGER_RULES:
            raise FlowDefinitionError(
                f"{where}: trigger_rule must be one of {', '.join(TRIGGER_RULES)}, not {s['trigger_rule']!r}"
            )
        mf = s["max_failures"]
        if not (_is_int(mf) and mf >= 0) and not (_is_number(mf) and 0 <= mf < 1):
            raise FlowDefinitionError(
                f"{where}: max_failures must be a count (an int >= 0) or a fraction of the items below 1, not {mf!r}"
            )
        if mf and s["foreach"] is None:
            raise FlowDefinitionError(f"{where}: max_failures applies to foreach steps; give foreach= too")
        inputs: tuple[str, ...] = ()
        required: set[str] = set()
        if fn is not None:
            inputs, required = parameters(where, fn)
        for expr_opt in ("when", "foreach", "repeat_until"):
            expr = s[expr_opt]
            if expr is None:
                continue
            if not isinstance(expr, str):
                raise FlowDefinitionError(f"{where}: {expr_opt} must be an expression string")
            try:
                templates.check_expression(expr)
                found = templates.expression_references(expr)
            except TemplateError as exc:
                raise FlowDefinitionError(f"{where}: {exc}") from None
            # the step's own output is in scope for repeat_until, not a dependency
            refs |= found - {name}
        after = [s["after"]] if isinstance(s["after"], str) else list(s["after"])
        deps = (required | {r for r in refs if r not in CONTEXT_PARAMETERS} | set(after)) - CONTEXT_PARAMETERS
        origin = s["origin"] or _origin_of(fn, name)
        spec = StepSpec(
            name=name, kind=kind, fn=fn, inputs=inputs, deps=frozenset(deps), options=options,
            retry=retry, timeout=s["timeout"], when=s["when"], foreach=s["foreach"],
            concurrency=s["concurrency"], repeat_until=s["repeat_until"],
            max_iterations=s["max_iterations"], on_failure=s["on_failure"], fallback=s["fallback"],
            cache=bool(s["cache"]), code_hash=code_hash(fn, kind, _hashable(options, s)),
            origin=origin, output_names=s["output_names"], trigger_rule=s["trigger_rule"],
            max_failures=s["max_failures"], required=frozenset(required),
        )  # fmt: skip
        _ = spec.plain  # worked out now, not when a run starts
        return spec

    def _admit(self, spec: StepSpec) -> None:
        """Add or replace a step, refusing a taken name or a cycle; all or nothing."""
        old = self._specs.get(spec.name)
        if old is not None and old.origin != spec.origin:
            raise FlowDefinitionError(
                f"step name {spec.name!r} is already taken in flow {self.name!r} by "
                f"{_describe(old.origin)}; choose another name, or flow.remove({spec.name!r}) first"
            )
        # a new cycle must pass through this step, so it needs a step that wants it
        if self._wanted_by.get(spec.name):
            trial = {**self._specs, spec.name: spec}
            cycle = _cycle_through(spec.name, trial)
            if cycle:
                from flownb.errors import CycleError

                raise CycleError(self.name, cycle)
        if old is not None:
            self._unindex(old)
        self._specs[spec.name] = spec
        self._graph = None
        for wanted in _wanted(spec):
            self._wanted_by.setdefault(wanted, set()).add(spec.name)

    def _unindex(self, spec: StepSpec) -> None:
        for wanted in _wanted(spec):
            self._wanted_by.get(wanted, set()).discard(spec.name)

    # -- validation and running ------------------------------------------

    def plan(self) -> RunPlan:
        """The flow as the engine runs it: validated now, in the caller, with its settings."""
        return RunPlan(self.name, self.graph(), self.max_concurrency, self.durability, self.executor,
                       self.max_runs, self.db, self._kinds)  # fmt: skip

    def graph(self) -> Graph:
        """Validate the whole flow (unknown names, cycles) and snapshot it."""
        if not self._specs:
            raise FlowDefinitionError(f"flow {self.name!r} has no steps; define one with @flow.step")
        if self._graph is None:
            self._graph = self._validated()
        return self._graph

    def _validated(self) -> Graph:
        specs: dict[str, StepSpec] = {}
        previous: str | None = None
        for name, spec in self._specs.items():
            specs[name] = _with_deps(spec, _resolve_deps(spec, self._specs)) if spec.inputs else spec
            if self.in_order and spec.origin[:1] != ("cell",):  # cells: the notebook layer chains them
                if previous is not None:
                    specs[name] = _with_deps(specs[name], specs[name].deps | {previous})
                previous = name
        deps = {n: s.deps for n, s in specs.items()}
        dependents = dag.dependents_of(deps)
        order = dag.check_dependencies(self.name, deps, dependents)
        for name, spec in specs.items():
            fb = spec.fallback
            if isinstance(fb, str):
                if fb not in specs:
                    raise FlowDefinitionError(f"step {name!r} names fallback {fb!r}, which is not a step")
                ancestors = _ancestors({n: s.deps for n, s in specs.items()}, name)
                if not specs[fb].deps <= ancestors:
                    raise FlowDefinitionError(
                        f"fallback {fb!r} of step {name!r} may only depend on steps that {name!r} "
                        f"depends on; it reads {', '.join(sorted(specs[fb].deps - ancestors))}"
                    )
        return Graph(self.name, specs, (deps, dependents, order))


def _split(name: str, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    common = {k: options[k] for k in _COMMON if k in options}
    return {**_DEFAULTS, **common, "name": name, "kind": kind}


def _kind_only(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _COMMON}


_DEFAULTS: dict[str, Any] = dict(
    name=None, kind="python", after=(), retries=0, backoff="exponential", retry_delay=1.0,
    max_delay=60.0, jitter=0.0, retry_on=(Exception,), timeout=None, when=None, foreach=None,
    concurrency=None, repeat_until=None, max_iterations=100, on_failure="stop", fallback=None,
    cache=False, trigger_rule="all_succeeded", max_failures=0, origin=None, output_names=None,
)  # fmt: skip
_COMMON = frozenset(_DEFAULTS) - {"name", "kind"}


def _retry_policy(where: str, s: dict[str, Any]) -> RetryPolicy:
    if not (_is_int(s["retries"]) and s["retries"] >= 0):
        raise FlowDefinitionError(f"{where}: retries must be a non-negative integer, not {s['retries']!r}")
    if s["backoff"] not in BACKOFFS:
        raise FlowDefinitionError(f"{where}: backoff must be one of {', '.join(BACKOFFS)}, not {s['backoff']!r}")
    for opt in ("retry_delay", "max_delay", "jitter"):
        if not (_is_number(s[opt]) and s[opt] >= 0):
            raise FlowDefinitionError(
                f"{where}: {opt} must be a non-negative, finite number of seconds, not {s[opt]!r}"
            )
    retry_on = s["retry_on"] if isinstance(s["retry_on"], tuple) else (s["retry_on"],)
    if not all(isinstance(e, type) and issubclass(e, BaseException) for e in retry_on):
        raise FlowDefinitionError(f"{where}: retry_on must be exception classes")
    return RetryPolicy(
        retries=s["retries"], backoff=s["backoff"], retry_delay=float(s["retry_delay"]),
        max_delay=float(s["max_delay"]), jitter=float(s["jitter"]), retry_on=retry_on,
    )  # fmt: skip


def _is_int(value: Any) -> bool:
    """An integer that is not a bool (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool: NaN compares false with every bound, inf never elapses."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parameters(where: str, fn: Callable[..., Any]) -> tuple[tuple[str, ...], set[str]]:
    """Parameter names, and those without a default (which must be steps)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise FlowDefinitionError(f"{where}: cannot read the parameters of {fn!r}") from None
    names: list[str] = []
    required: set[str] = set()
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise FlowDefinitionError(f"{where}: *args and **kwargs cannot name inputs; name each input")
        names.append(p.name)
        if p.default is p.empty:
            required.add(p.name)
    return tuple(names), required - CONTEXT_PARAMETERS


def _resolve_deps(spec: StepSpec, specs: Mapping[str, StepSpec]) -> frozenset[str]:
    """The step's dependencies, with inputs that have a default and name a step."""
    optional = [i for i in spec.inputs if i in specs and i not in CONTEXT_PARAMETERS and i not in spec.deps]
    return spec.deps.union(optional) if optional else spec.deps


def _wanted(spec: StepSpec) -> set[str]:
    return set(spec.deps) | {i for i in spec.inputs if i not in CONTEXT_PARAMETERS}


def _cycle_through(start: str, specs: Mapping[str, StepSpec]) -> list[str] | None:
    """A dependency path from ``start`` back to itself, or None."""
    parent: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for dep in sorted(_resolve_deps(specs[node], specs)):
            if dep not in specs:
                continue
            if dep == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if dep not in parent:
                parent[dep] = node
                todo.append(dep)
    return None


def _with_deps(spec: StepSpec, deps: frozenset[str]) -> StepSpec:
    if deps == spec.deps:
        return spec  # specs are not changed once registered: share it
    from dataclasses import replace

    return replace(spec, deps=deps)


def _ancestors(deps: Mapping[str, Iterable[str]], step: str) -> set[str]:
    seen: set[str] = set()
    todo = list(deps[step])
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            todo.extend(deps.get(d, ()))
    return seen


def _origin_of(fn: Callable[..., Any] | None, name: str) -> tuple[str, ...]:
    if fn is None:
        return ("call", name)
    module = getattr(fn, "__module__", "") or ""
    qualname = getattr(fn, "__qualname__", name)
    code = getattr(fn, "__code__", None)
    filename = code.co_filename if code is not None else ""
    # a notebook cell gets a new file name each time it runs; the function's
    # qualified name is what stays the same when the cell is re-run
    if module == "__main__" or "ipykernel" in filename or filename.startswith("<"):
        filename = ""
    return ("function", module, qualname, filename)


def _describe(origin: tuple[str, ...]) -> str:
    if origin and origin[0] == "function":
        return f"function {origin[2]} ({origin[1]})"
    if origin and origin[0] == "cell":
        return f"notebook cell {origin[1]}"
    return "another definition"


def _hashable(options: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    out = {k: (v.name if hasattr(v, "_specs") else v) for k, v in options.items()}
    for key in ("when", "foreach", "repeat_until", "output_names", "trigger_rule", "max_failures"):
        out[f"@{key}"] = s[key]
    return out
