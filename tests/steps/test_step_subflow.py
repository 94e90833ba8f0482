"""Sub-flows: a child run per step, its outputs as the step's output."""

from __future__ import annotations

import asyncio
import threading

import flownb


def child_flow(db: str) -> flownb.Flow:
    child = flownb.Flow("child", db=db)

    @child.step
    def double(params: dict[str, int]) -> int:
        return params["n"] * 2

    @child.step
    def plus_one(double: int) -> int:
        return double + 1

    return child


def test_a_subflow_runs_as_a_child_run_with_templated_params(db: str) -> None:
    parent = flownb.Flow("parent", db=db)

    @parent.step
    def seed() -> int:
        return 20

    parent.subflow("inner", child_flow(db), params={"n": "{{ seed }}"})

    @parent.step
    def use(inner: dict[str, int]) -> int:
        return inner["plus_one"]

    run = parent.run().wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["inner"] == {"double": 40, "plus_one": 41}
    assert run.outputs["use"] == 41
    children = flownb.sql("SELECT run_id, flow, status, parent_run_id FROM runs WHERE parent_run_id = ?", db=db, params=[run.id])
    assert list(children["flow"]) == ["child"] and list(children["status"]) == ["succeeded"]
    row = run.steps.set_index("step").loc["inner"]
    assert row["kind"] == "subflow"
    assert f"child run {children['run_id'][0]}" in row["stdout"]  # the panel names the child run


def test_a_failing_child_fails_the_step_naming_the_child_run(db: str) -> None:
    child = flownb.Flow("broken_child", db=db)

    @child.step
    def boom() -> None:
        raise ValueError("child went wrong")

    parent = flownb.Flow("parent2", db=db)
    parent.subflow("inner", child)
    run = parent.run().wait(60)
    assert run.status == "failed"
    assert "child run" in str(run.error) and "child went wrong" in str(run.error)


def test_nesting_is_limited_to_five_levels(db: str) -> None:
    loop = flownb.Flow("ouroboros", db=db)
    loop.subflow("again", loop)
    run = loop.run().wait(120)
    assert run.status == "failed"
    assert "nest deeper than 5" in str(run.error)
    depth = flownb.sql("SELECT count(*) AS n FROM runs WHERE flow = 'ouroboros'", db=db)["n"][0]
    assert depth == 6  # the top run and five children


def test_cancel_reaches_the_child(db: str) -> None:
    started = threading.Event()
    child = flownb.Flow("slow_child", db=db)

    @child.step
    async def wait_long() -> None:
        started.set()
        await asyncio.sleep(60)

    parent = flownb.Flow("parent3", db=db)
    parent.subflow("inner", child)
    run = parent.run()
    assert started.wait(60)
    run.cancel()
    assert run.wait(60).status == "cancelled"
    status = flownb.sql("SELECT status FROM runs WHERE flow = 'slow_child'", db=db)
    assert list(status["status"]) == ["cancelled"]
