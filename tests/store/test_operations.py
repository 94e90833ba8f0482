"""One suite for both stores: the named operations, the in-memory store's Python answers against
the views' SQL answers, and the fold as the views' Python twin."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

import flownb
from flownb.store.base import Store, open_store
from flownb.store.events import RunFold
from flownb.store.memory import MemoryStore
from flownb.store.operations import Operations
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
    assert store.waiting_approvals(run_id) == ["gate"]
    assert store.approval_state(run_id, "gate") == (True, None)
    assert store.approval_state(run_id, "nope") == (False, None)
    run.approve("gate", by="tester")
    assert run.wait(30).status == "succeeded"
    assert store.approval_state(run_id, "gate") == (True, "approved")
    assert store.resolve_run_id(run_id[:6]) == run_id
    with pytest.raises(flownb.RunNotFound):
        store.resolve_run_id("zzzz")
    row = store.run_row(run_id)
    assert row is not None and (row["status"], row["flow"], row["trigger"]) == ("succeeded", "ops", "manual")
    assert store.latest_run("ops") == (run_id, "succeeded")
    assert store.latest_run("other") is None
    steps = store.steps_frame(run_id)
    flaky = steps[steps["step"] == "flaky"].sort_values("attempt")
    assert list(flaky["status"]) == ["failed", "succeeded"] and flaky["error"].iloc[0] == "once"
    assert list(store.history()["run_id"]) == [run_id]


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
    row = store.run_row(run.id)
    assert row is not None and row["status"] == fold.status
    assert (row["error"] if isinstance(row["error"], str) else None) == fold.error
    view = store.steps_frame(run.id)
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


def a_busy_store() -> tuple[MemoryStore, list[str]]:
    """An in-memory store with runs of every shape: retries, failures, a skipped step, a foreach,
    approvals decided by event and by the inbox, one left waiting, and a cached step."""
    store = MemoryStore()
    flow = a_flow(store, "busy")

    @flow.step(after=["gate"])
    def after_gate() -> str:
        return "done"

    @flow.step(when="False")
    def skipped() -> None: ...

    @flow.step(foreach="[1, 2, 3]")
    def each(item: int) -> int:
        if item == 2:
            print("two", flush=True)
        return item * 2

    @flow.step(cache=True)
    def cached(load: list[int]) -> int:
        return len(load)

    runs = []
    first = flow.run()
    _wait_for_gate(first)
    first.approve("gate", by="me", comment="fine")
    runs.append(first.wait(30).id)
    second = flow.run(trigger="webhook")
    _wait_for_gate(second)
    runs.append(second.id)  # left waiting
    broken = flownb.Flow("broken", db=store)

    @broken.step
    def boom() -> None:
        raise ValueError("no")

    runs.append(broken.run().wait(30).id)
    return store, runs


def test_the_in_memory_store_answers_as_the_views_do() -> None:
    """MemoryStore answers from its events in Python; Operations' SQL over the same store's
    views (built in DuckDB for users' queries) must say the same, column for column."""
    store, runs = a_busy_store()
    sql = Operations  # the SQL answers, called on the same store
    for run_id in runs:
        pd.testing.assert_frame_equal(store.steps_frame(run_id), sql.steps_frame(store, run_id))
        pd.testing.assert_frame_equal(store.runs_frame(run_id), sql.runs_frame(store, run_id))
        assert _same(store.run_row(run_id), sql.run_row(store, run_id))
        assert store.waiting_approvals(run_id) == sql.waiting_approvals(store, run_id)
        for step in ("gate", "load", "nope"):
            assert store.approval_state(run_id, step) == sql.approval_state(store, run_id, step)
        assert store.run_ids_like(run_id[:3]) == sql.run_ids_like(store, run_id[:3])
    pd.testing.assert_frame_equal(store.history(2), sql.history(store, 2))
    pd.testing.assert_frame_equal(store.history(), sql.history(store))
    for flow in ("busy", "broken", "none"):
        assert store.latest_run(flow) == sql.latest_run(store, flow)
    hashes = store.steps_frame(runs[0]).set_index("step")["input_hash"]
    for step in ("cached", "load", "each"):
        for other_than in (runs[0], runs[1], "x"):
            args = ("busy", step, str(hashes.get(step)), other_than)
            assert store.cached_success(*args) == sql.cached_success(store, *args), args
    assert store.waiting_approvals(runs[1]) == ["gate"]
    assert store.approval_state(runs[0], "gate") == (True, "approved")
    assert store.run_row(runs[2])["status"] == "failed"  # type: ignore[index]


def test_the_in_memory_store_needs_no_sql_for_what_flownb_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs, resumes, history, steps and approvals on ``:memory:`` never build a DuckDB database."""
    store, runs = a_busy_store()

    def no_sql(*args: object, **kwargs: object) -> None:
        raise AssertionError("the in-memory store ran SQL for a named operation")

    monkeypatch.setattr(MemoryStore, "query", no_sql)
    flow = flownb.Flow("again", db=store)

    @flow.step
    def fails_once() -> int:
        if not flow_state:
            flow_state.append(1)
            raise RuntimeError("first time")
        return 1

    flow_state: list[int] = []
    failed = flow.run().wait(30)
    assert failed.status == "failed"
    assert flow.resume(failed.id).wait(30).status == "succeeded"
    assert list(flownb.history(store, limit=1)["flow"]) == ["again"]
    assert list(failed.steps["status"]) == ["failed", "succeeded"]
    assert store.resolve_run_id(runs[1][:8]) == runs[1]
    assert store.latest_run("busy") == (runs[1], "waiting")


def _wait_for_gate(run: flownb.Run) -> None:
    deadline = time.monotonic() + 30
    while run.pending_approvals != ["gate"]:
        assert time.monotonic() < deadline, "the gate never waited"
        time.sleep(0.02)


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Two rows alike, NaN equal to NaN."""
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(a[k] == b[k] or (pd.isna(a[k]) and pd.isna(b[k])) for k in a)
