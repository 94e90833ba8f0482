"""Hypothesis strategies shared by the tests: random DAGs."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 15) -> dict[str, set[str]]:
    """A random DAG as step -> dependencies; edges only point to earlier steps."""
    n = draw(st.integers(min_value=1, max_value=max_steps))
    names = [f"s{i}" for i in range(n)]
    deps: dict[str, set[str]] = {}
    for i, name in enumerate(names):
        deps[name] = set(draw(st.lists(st.sampled_from(names[:i]), max_size=3))) if i else set()
    return deps
