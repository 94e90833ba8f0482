"""Joins and cleanup: trigger rules, foreach failure thresholds, and records that always end."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

import flownb
from tests.strategies import flows_with_failures


def test_a_join_after_complementary_when_branches_runs_whichever_branch_ran() -> None:
    flow = flownb.Flow("branches", db=":memory:")

    @flow.step
    def decide(params: dict[str, Any]) -> bool:
        return bool(params["big"])

    @flow.step(when="decide")
    def big(decide: bool) -> str:
        return "big"

    @flow.step(when="not decide")
    def small(decide: bool) -> str:
        return "small"

    @flow.step(trigger_rule="none_failed")
    def join(big: str | None, small: str | None) -> str:
        return big or small or "neither"

    for flag, expected in ((True, "big"), (False, "small")):
        run = flow.run({"big": flag}).wait(30)
        assert run.status == "succeeded", run.error
        assert run.outputs["join"] == expected
        assert run.step_status[("small" if flag else "big")] == "skipped"


def test_a_cleanup_runs_after_a_failure_and_the_run_still_fails() -> None:
    flow = flownb.Flow("cleanup", db=":memory:")
    cleaned: list[object] = []

    @flow.step
    def risky() -> None:
        raise RuntimeError("the disk is on fire")

    @flow.step
    def publish(risky: None) -> str:
        return "never"

    @flow.step(after=["risky"], trigger_rule="all_done")
    def cleanup(risky: object = "no output") -> None:
        cleaned.append(risky)

    run = flow.run().wait(30)
    assert run.status == "failed" and "the disk is on fire" in str(run.error)
    assert cleaned == ["no output"]  # ran, with its input's default: risky gave no output
    assert run.step_status["publish"] == "cancelled" and run.step_status["cleanup"] == "succeeded"


def test_one_succeeded_needs_one_success_among_ended_upstream_steps() -> None:
    flow = flownb.Flow("any", db=":memory:")

    @flow.step(on_failure="continue")
    def mirror_a() -> str:
        raise ConnectionError("down")

    @flow.step(on_failure="continue")
    def mirror_b() -> str:
        return "payload"

    @flow.step(trigger_rule="one_succeeded")
    def fetch(mirror_a: str | None, mirror_b: str | None) -> str | None:
        return mirror_a or mirror_b

    run = flow.run().wait(30)
    assert run.outputs["fetch"] == "payload"
    assert run.status == "failed"  # mirror_a failed: the run says so, the join still ran


def test_a_foreach_within_its_failure_threshold_succeeds_with_none_for_failed_items() -> None:
    flow = flownb.Flow("threshold", db=":memory:")

    @flow.step(foreach="params['items']", max_failures=2)
    def square(item: int) -> int:
        if item < 0:
            raise ValueError(f"negative: {item}")
        return item * item

    run = flow.run({"items": [1, -2, 3, -4]}).wait(30)
    assert run.status == "succeeded", run.error
    assert run.outputs["square"] == [1, None, 9, None]
    rows = run.steps
    assert sorted(rows[rows["status"] == "failed"]["step"]) == ["square[1]", "square[3]"]
    parent = rows[rows["step"] == "square"].iloc[-1]
    assert parent["status"] == "succeeded" and "2 of 4 items failed" in parent["reason"]


def test_a_foreach_beyond_its_threshold_fails_and_its_row_ends() -> None:
    flow = flownb.Flow("too_many", db=":memory:")

    @flow.step(foreach="params['items']", max_failures=0.25, concurrency=1)
    def square(item: int) -> int:
        if item < 0:
            raise ValueError(f"negative: {item}")
        return item * item

    run = flow.run({"items": [-1, -2, 3, 4]}).wait(30)
    assert run.status == "failed"
    assert "more than max_failures=0.25 allows (1)" in str(run.error)
    rows = run.steps
    parent = rows[rows["step"] == "square"].iloc[-1]
    assert parent["status"] == "failed" and parent["ended_at"] is not None


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_max_failures_is_a_count_or_a_fraction(bad: object) -> None:
    flow = flownb.Flow("bad", db=":memory:")
    with pytest.raises(flownb.FlowDefinitionError, match="max_failures"):
        flow.step(lambda item: item, name="s", foreach="[1]", max_failures=bad)


def test_an_unknown_trigger_rule_is_refused() -> None:
    flow = flownb.Flow("bad", db=":memory:")
    with pytest.raises(flownb.FlowDefinitionError, match="trigger_rule must be one of all_succeeded"):
        flow.step(lambda: 1, name="s", trigger_rule="one_failed")


@settings(max_examples=40, deadline=None)
@given(flows_with_failures())
def test_no_step_row_is_left_running_after_its_run(steps: list[dict[str, Any]]) -> None:
    flow = flownb.Flow("ends", db=":memory:")
    for options in steps:
        fails = options.pop("fails")
        flow.step(_body(bool(fails)), **options)
    run = flow.run().wait(60)
    assert run.done
    rows = run.steps
    assert rows.empty or set(rows["status"]) <= {"succeeded", "failed", "skipped", "cancelled", "cached"}
    assert rows.empty or rows["ended_at"].notna().all()
    assert all(status not in ("pending", "running", "retrying", "waiting") for status in run.step_status.values())


def _body(fails: bool) -> Any:
    def body() -> None:
        if fails:
            raise RuntimeError("planned")

    return body
