"""DAG checks and levels: cycles with their path, unknown names, waves."""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Iterable, Mapping

from flownb.errors import CycleError, FlowDefinitionError


def check_dependencies(
    flow: str, deps: Mapping[str, Iterable[str]], dependents: Mapping[str, Iterable[str]] | None = None
) -> list[str]:
    """Raise for a dependency on an unknown step (with a did-you-mean) or a cycle;
    else return the steps in topological order."""
    names = deps.keys()
    for step, wanted in deps.items():
        for dep in wanted:
            if dep == step:
                raise CycleError(flow, [step, step])
            if dep not in names:
                hint = difflib.get_close_matches(dep, sorted(names), n=1)
                also = f"; did you mean {hint[0]!r}?" if hint else ""
                raise FlowDefinitionError(
                    f"step {step!r} of flow {flow!r} depends on {dep!r}, which is not a step{also}"
                )
    order = topological_order(deps, strict=False, dependents=dependents)
    if len(order) != len(deps):
        raise CycleError(flow, find_cycle(deps) or [])
    return order


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as a path ``[a, b, c, a]`` (a depends on b ...), or None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    for root in sorted(deps):
        if color[root] != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(deps[root]))]
        path = [root]
        color[root] = grey
        while stack:
            node, todo = stack[-1]
            if not todo:
                color[node] = black
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if nxt not in color:
                continue
            if color[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append((nxt, sorted(deps[nxt])))
    return None


def levels(
    deps: Mapping[str, Iterable[str]], dependents: Mapping[str, Iterable[str]] | None = None,
    order: Iterable[str] | None = None,
) -> dict[str, int]:  # fmt: skip
    """Topological level of every step: 0 for roots, else 1 + the deepest dependency.

    Levels are for display only; the scheduler never waits for a whole level.
    ``order`` may be given when the caller has it (``topological_order(deps)``).
    """
    level: dict[str, int] = {}
    for step in order if order is not None else topological_order(deps, dependents=dependents):
        wanted = deps[step]
        level[step] = 1 + max(level[d] for d in wanted) if wanted else 0
    return level


def topological_order(
    deps: Mapping[str, Iterable[str]], *, strict: bool = True, dependents: Mapping[str, Iterable[str]] | None = None
) -> list[str]:
    """Steps in an order where each comes after its dependencies (Kahn's algorithm).

    With a cycle, the steps on or behind it are missing: ``strict`` raises then.
    ``dependents`` may be given when the caller has it (``dependents_of(deps)``).
    """
    if dependents is None:
        dependents = dependents_of(deps)
    waiting = {s: len(d if isinstance(d, frozenset | set) else set(d)) for s, d in deps.items()}
    ready = deque(s for s, n in waiting.items() if not n)
    order: list[str] = []
    while ready:
        step = ready.popleft()
        order.append(step)
        for child in dependents.get(step, ()):
            left = waiting[child] - 1
            waiting[child] = left
            if not left:
                ready.append(child)
    if strict and len(order) != len(waiting):
        raise CycleError("?", find_cycle(deps) or [])
    return order


def dependents_of(deps: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """The steps that wait for each step; a step nobody waits for has no entry.

    No empty set per leaf: a wide flow of 10,000 steps would hold 10,000 of them for
    the whole run, and the garbage collector would walk them in every full collection.
    """
    out: dict[str, set[str]] = {}
    for step, wanted in deps.items():
        for dep in wanted:
            if dep in out:
                out[dep].add(step)
            else:
                out[dep] = {step}
    return out


def downstream(deps: Mapping[str, Iterable[str]], roots: Iterable[str]) -> set[str]:
    """Every step that depends, directly or not, on one of ``roots`` (roots excluded)."""
    dependents = dependents_of(deps)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        for child in dependents.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen
