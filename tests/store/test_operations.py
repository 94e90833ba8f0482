"""One suite for both stores: the named operations, and the fold as the views' Python twin."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import flownb
from flownb.store import operations as ops
from flownb.store.base import Store, open_store
from flownb.store.events import RunFold
from flownb.store.memory import MemoryStore
from tests.strategies import flows_with_failures


@pytest.fixture(params=["memory", "duckdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return open_store(str(tmp_path / "ops.duckdb"))


def a_flow(store: Store, name: str = "ops") -> flownb.Flow:
    flow = flownb.Flow(name, db=store)
    calls: list[int] = []

    @flow.step
    def load() -> list[int]:
        return [1, 2, 3]

    @flow.step(retries=1, retry_delay=0)
    def flaky(load: list[int]) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        return sum(load)

    flow.approval("gate", message="ok?")
    return flow


def test_named_operations_answer_alike_on_both_stores(store: Store) -> None:
    flow = a_flow(store)
    run = flow.run()
    run_id = run.id
    deadline = time.monotonic() + 30
    while run.pending_approvals != ["gate"]:
        assert time.monotonic() < deadline, "the gate never waited"
        time.sleep(0.05)
    assert ops.waiting_approvals(store, run_id) == ["gate"]
    assert ops.approval_state(store, run_id, "gate") == (True, None)
    assert ops.approval_state(store, run_id, "nope") == (False, None)
    run.approve("gate", by="tester")
    assert run.wait(30).status == "succeeded"
    assert ops.approval_state(store, run_id, "gate") == (True, "approved")
    assert ops.resolve_run_id(store, run_id[:6]) == run_id
    with pytest.raises(flownb.RunNotFound):
        ops.resolve_run_id(store, "zzzz")
    row = ops.run_row(store, run_id)
    assert row is not None and (row["status"], row["flow"], row["trigger"]) == ("succeeded", "ops", "manual")
    assert ops.latest_run(store, "ops") == (run_id, "succeeded")
    assert ops.latest_run(store, "other") is None
    steps = ops.steps_frame(store, run_id)
    flaky = steps[steps["step"] == "flaky"].sort_values("attempt")
    assert list(flaky["status"]) == ["failed", "succeeded"] and flaky["error"].iloc[0] == "once"
    assert list(ops.history(store)["run_id"]) == [run_id]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flows_with_failures(max_steps=6))
def test_the_fold_says_what_the_views_say(store: Store, steps: list[dict[str, Any]]) -> None:
    """store/events.py's RunFold and schema.py's views are two readers of one table: they agree."""
    flow = flownb.Flow("twin", db=store)
    for options in steps:
        fails = bool(options.pop("fails"))
        flow.step(_body(fails), **options)
    run = flow.run().wait(60)
    fold = RunFold.of(store.run_events(run.id))
    row = ops.run_row(store, run.id)
    assert row is not None and row["status"] == fold.status
    assert (row["error"] if isinstance(row["error"], str) else None) == fold.error
    view = ops.steps_frame(store, run.id)
    latest = view.sort_values("attempt").groupby("step").tail(1).set_index("step")
    folded = {n: s for n, s in fold.steps.items() if s.attempts or s.finished}
    assert set(latest.index) == set(folded)
    for name, s in folded.items():
        assert latest.loc[name, "status"] == s.status, name
        assert int(latest.loc[name, "attempt"]) == s.attempts, name
        error = latest.loc[name, "error"]
        assert (error if isinstance(error, str) else None) == (s.error if s.status == "failed" else None), name


def _body(fails: bool) -> Any:
    def body() -> None:
        if fails:
            raise RuntimeError("planned")

    return body
