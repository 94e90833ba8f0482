"""Ready-queue scheduling: overlap, no level barriers, every step once after its deps."""

from __future__ import annotations

import asyncio
import threading

import pandas as pd
from hypothesis import HealthCheck, given, settings

import flownb
from tests.strategies import dags


def test_parallel_branches_overlap(db: str) -> None:
    flow = flownb.Flow("overlap", db=db)
    barrier = threading.Barrier(2, timeout=30)

    @flow.step
    def left() -> str:
        barrier.wait()  # both must be running at once, or this times out
        return "l"

    @flow.step
    def right() -> str:
        barrier.wait()
        return "r"

    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    rows = run.steps.set_index("step")
    assert rows.loc["left", "started_at"] < rows.loc["right", "ended_at"]
    assert rows.loc["right", "started_at"] < rows.loc["left", "ended_at"]


def test_slow_branch_never_holds_back_an_unrelated_one(db: str) -> None:
    """Levels are not barriers: b2 (level 1) ends before slow a1 (level 0) ends."""
    flow = flownb.Flow("nobarrier", db=db)
    release = threading.Event()

    @flow.step
    def slow() -> int:
        release.wait(60)
        return 1

    @flow.step
    def fast() -> int:
        return 2

    @flow.step
    def after_fast(fast: int) -> int:
        release.set()  # only reachable while slow is still running
        return fast

    @flow.step
    def last(slow: int, after_fast: int) -> int:
        return slow + after_fast

    run = flow.run().wait(60)
    assert run.outputs["last"] == 3
    rows = run.steps.set_index("step")
    assert rows.loc["after_fast", "ended_at"] <= rows.loc["slow", "ended_at"]
    assert rows.loc["after_fast", "level"] == 1 and rows.loc["slow", "level"] == 0


def overlapping_pairs(steps: pd.DataFrame) -> set[frozenset[str]]:
    """Pairs of steps whose recorded intervals (``started_at`` .. ``ended_at``) overlap."""
    rows = list(steps[["step", "started_at", "ended_at"]].itertuples(index=False))
    return {
        frozenset((a.step, b.step))
        for a in rows
        for b in rows
        if a.step != b.step and a.started_at < b.ended_at and b.started_at < a.ended_at
    }


def test_max_concurrency_limits_running_steps() -> None:
    """Two at a time, never three: the steps meet in pairs at a barrier, so a limit of one
    would time out, and a counter of the steps inside their body sees any third."""
    flow = flownb.Flow("limit", db=":memory:", max_concurrency=2)
    pairs = threading.Barrier(2, timeout=30)
    running = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        pairs.wait()
        with lock:
            running -= 1

    for i in range(8):
        flow.step(work, name=f"w{i}")
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert peak == 2
    # the record agrees: every step ran beside another one
    together = set().union(*overlapping_pairs(run.steps))
    assert together == {f"w{i}" for i in range(8)}


def test_async_steps_run_on_the_loop_and_await_run() -> None:
    flow = flownb.Flow("asyncs", db=":memory:")

    @flow.step
    async def a() -> int:
        await asyncio.sleep(0.01)
        return 20

    @flow.step
    async def b(a: int) -> int:
        return a + 1

    async def main() -> flownb.Run:
        return await flow.run()

    run = asyncio.run(main())
    assert run.outputs == {"a": 20, "b": 21}


def test_prints_of_parallel_steps_never_interleave() -> None:
    flow = flownb.Flow("prints", db=":memory:")
    for name in ("p", "q", "r"):

        def talk(name: str = name) -> None:
            for i in range(200):
                print(f"{name}{i}")

        flow.step(talk, name=name)
    run = flow.run().wait(60)
    rows = run.steps.set_index("step")
    for name in ("p", "q", "r"):
        assert rows.loc[name, "stdout"] == "".join(f"{name}{i}\n" for i in range(200))


def test_durability_sync_commits_a_completion_before_dependents_start(db: str) -> None:
    flow = flownb.Flow("sync", db=db)
    seen: list[pd.DataFrame] = []

    @flow.step
    def first() -> int:
        return 1

    @flow.step
    def second(first: int) -> int:
        # a fresh look at the store from inside the run
        seen.append(flownb.sql("SELECT status FROM steps WHERE step = 'first'", db=db))
        return first

    assert flow.run().wait(60).status == "succeeded"
    assert list(seen[0]["status"]) == ["succeeded"]


def test_async_durability_records_everything_by_the_end(db: str) -> None:
    flow = flownb.Flow("async", db=db, durability="async")
    for i in range(20):
        flow.step(lambda: 1, name=f"s{i}")
    run = flow.run().wait(60)
    counts = flownb.sql("SELECT count(*) AS n FROM steps WHERE run_id = ?", db=db, params=[run.id])
    assert counts["n"][0] == 20


def test_max_runs_queues_further_runs_as_pending() -> None:
    flow = flownb.Flow("maxruns", db=":memory:", max_runs=1)
    started, gate = threading.Event(), threading.Event()

    @flow.step
    def hold() -> None:
        started.set()
        gate.wait(60)

    first = flow.run()
    second = flow.run()
    assert started.wait(30)  # the first run holds its one slot
    assert second.status == "pending"
    gate.set()
    assert first.wait(60).status == "succeeded"
    assert second.wait(60).status == "succeeded"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_run_every_step_once_after_its_dependencies(deps: dict[str, set[str]]) -> None:
    flow = flownb.Flow("random", db=":memory:", max_concurrency=4)
    order: list[str] = []
    lock = threading.Lock()
    for name, wanted in deps.items():

        def step(name: str = name) -> str:
            with lock:
                order.append(name)
            return name

        flow.step(step, name=name, after=sorted(wanted))
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert sorted(order) == sorted(deps)
    position = {name: i for i, name in enumerate(order)}
    for name, wanted in deps.items():
        assert all(position[d] < position[name] for d in wanted)
