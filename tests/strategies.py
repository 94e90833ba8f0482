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


@st.composite
def flows_with_failures(draw: st.DrawFn, max_steps: int = 10) -> list[dict[str, object]]:
    """Steps for a flow: dependencies, whether the step fails, its ``when``, ``on_failure`` and
    ``trigger_rule``; each a dict of ``flow.step`` options plus ``fails``."""
    deps = draw(dags(max_steps=max_steps))
    out = []
    for name, upstream in deps.items():
        out.append({
            "name": name, "after": sorted(upstream), "fails": draw(st.booleans()),
            "when": draw(st.sampled_from([None, "True", "False"])),
            "on_failure": draw(st.sampled_from(["stop", "continue"])),
            "trigger_rule": draw(st.sampled_from(["all_succeeded", "none_failed", "all_done", "one_succeeded"])),
        })  # fmt: skip
    return out
