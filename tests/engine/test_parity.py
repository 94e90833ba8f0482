"""The fast path records what the stepper records, field by field (engine/journal.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flownb
from flownb.engine.runtime import runtime
from tests.strategies import dags

#: differ between two runs of the same flow whichever path ran it
VOLATILE_FIELDS = {"started_at", "duration_ms", "traceback", "input_hash"}


@st.composite
def behaviours(draw: st.DrawFn) -> tuple[dict[str, set[str]], dict[str, tuple[str, Any, bool]]]:
    """A DAG, and for each step: what it returns, what it prints, and whether it raises."""
    deps = draw(dags(max_steps=8))
    values = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))  # fmt: skip
    plan = {name: (draw(st.text(max_size=6)), draw(values), draw(st.booleans()) and draw(st.booleans()))
            for name in deps}  # fmt: skip
    return deps, plan


def build(deps: dict[str, set[str]], plan: dict[str, tuple[str, Any, bool]], name: str) -> flownb.Flow:
    flow = flownb.Flow(name, db=":memory:")
    for step, upstream in deps.items():
        printed, value, fails = plan[step]
        flow.step(_body(step, printed, value, fails), name=step, after=sorted(upstream), on_failure="continue")
    return flow


def _body(step: str, printed: str, value: Any, fails: bool) -> Callable[[], Any]:
    def body() -> Any:
        if printed:
            print(printed)
        if fails:
            raise ValueError(f"{step} says no")
        return value

    body.__name__ = step
    return body


@pytest.fixture
def stepper_only() -> Iterator[Callable[[bool], None]]:
    """Switch the fast path off for the runs started while ``on(True)``."""
    state = {"on": False}

    def off_if_asked(run: flownb.Run) -> None:
        if state["on"]:
            run.execution.scheduler.submits = False

    stop = runtime().watch_starts(off_if_asked)
    yield lambda on: state.__setitem__("on", on)
    stop()


def records(run: flownb.Run) -> list[tuple[str | None, str, dict[str, Any]]]:
    store = run.execution.store
    store.flush()
    out = []
    for e in store.run_events(run.id):
        if e.event != "step_finished":
            continue  # a start is written only when the attempt outlives the recorder's pause: timing
        payload = {k: v for k, v in e.payload.items() if k not in VOLATILE_FIELDS}
        if payload.get("status") == "skipped":  # which failed upstream step got there first is timing
            assert payload.get("reason", "").startswith("upstream step '")
            payload["reason"] = "upstream"  # which upstream step ended first, and how, is timing
        out.append((e.step, e.event, payload))
    # steps of one wave finish in any order: compare them as sets of records, one list per step
    return sorted(out, key=lambda r: (r[0] or "", r[1], repr(sorted(r[2].items()))))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(behaviours())
def test_the_fast_path_and_the_stepper_record_the_same(
    stepper_only: Callable[[bool], None], case: tuple[dict[str, set[str]], dict[str, tuple[str, Any, bool]]]
) -> None:
    deps, plan = case
    stepper_only(False)
    fast = build(deps, plan, "parity").run().wait(60)
    stepper_only(True)
    slow = build(deps, plan, "parity").run().wait(60)
    stepper_only(False)
    assert fast.status == slow.status
    assert fast.step_status == slow.step_status
    assert records(fast) == records(slow)
    for step in deps:  # and it was the fast path that ran them first
        assert build(deps, plan, "check").steps[step].plain
