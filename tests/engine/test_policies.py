"""Retries with backoff, timeouts, failure policies, conditions and loops."""

from __future__ import annotations

import asyncio
import threading

import pytest

import flownb
from flownb.model.spec import RetryPolicy


def test_retries_leave_one_row_per_attempt_with_the_backoff_between(db: str) -> None:
    flow = flownb.Flow("retry", db=db)
    calls = 0

    @flow.step(retries=3, backoff="exponential", retry_delay=0.05, max_delay=1)
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"try {calls}")
        return "ok"

    run = flow.run().wait(60)
    assert run.outputs["flaky"] == "ok"
    rows = run.steps.sort_values("attempt").reset_index(drop=True)
    assert list(rows["attempt"]) == [1, 2, 3]
    assert list(rows["status"]) == ["failed", "failed", "succeeded"]
    assert list(rows["error"][:2]) == ["try 1", "try 2"]
    assert set(rows["error_type"][:2]) == {"ConnectionError"}
    gaps = [(rows["started_at"][i + 1] - rows["ended_at"][i]).total_seconds() for i in range(2)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.10  # 0.05 * 2**(attempt-1)


def test_backoff_shapes_and_jitter_stay_within_max_delay() -> None:
    assert [RetryPolicy(backoff="constant", retry_delay=2).delay(a) for a in (1, 2, 3)] == [2, 2, 2]
    assert [RetryPolicy(backoff="linear", retry_delay=2).delay(a) for a in (1, 2, 3)] == [2, 4, 6]
    assert [RetryPolicy(retry_delay=2, max_delay=5).delay(a) for a in (1, 2, 3)] == [2, 4, 5]
    jittered = {RetryPolicy(retry_delay=1, jitter=0.5, max_delay=10).delay(1) for _ in range(50)}
    assert len(jittered) > 1 and all(0.5 <= d <= 1.5 for d in jittered)


def test_retry_on_limits_which_errors_are_retried() -> None:
    flow = flownb.Flow("retry_on", db=":memory:")

    @flow.step(retries=5, retry_delay=0, retry_on=ConnectionError)
    def strict() -> None:
        raise ValueError("not transient")

    run = flow.run().wait(60)
    assert run.status == "failed"
    assert len(run.steps) == 1
    assert isinstance(run.error, flownb.StepFailed) and "strict" in str(run.error)


def test_a_timeout_stops_an_async_step(db: str) -> None:
    flow = flownb.Flow("timeout", db=db)
    finished = threading.Event()

    @flow.step(timeout=0.2)
    async def sleepy() -> None:
        await asyncio.sleep(30)
        finished.set()

    run = flow.run().wait(60)
    assert run.status == "failed"
    assert isinstance(run.error, flownb.StepTimeout)
    assert "sleepy" in str(run.error) and run.id in str(run.error)
    row = run.steps.iloc[0]
    assert row["status"] == "failed" and row["error_type"] == "StepTimeout"
    assert not finished.is_set()


def test_a_timed_out_thread_is_abandoned_and_the_attempt_fails() -> None:
    flow = flownb.Flow("thread_timeout", db=":memory:")
    release = threading.Event()

    @flow.step(timeout=0.1)
    def stuck() -> None:
        release.wait(30)

    run = flow.run().wait(60)
    release.set()
    assert isinstance(run.error, flownb.StepTimeout)


def test_run_timeout_fails_the_run() -> None:
    flow = flownb.Flow("run_timeout", db=":memory:")

    @flow.step
    async def forever() -> None:
        await asyncio.sleep(30)

    run = flow.run(timeout=0.2).wait(60)
    assert run.status == "failed" and "timed out" in str(run.error)
    assert run.step_status["forever"] == "cancelled"


def test_on_failure_stop_cancels_running_steps() -> None:
    flow = flownb.Flow("stop", db=":memory:")

    @flow.step
    async def slow() -> None:
        await asyncio.sleep(30)

    @flow.step
    def boom() -> None:
        raise RuntimeError("boom")

    @flow.step
    def after(boom: None) -> None:
        return None

    run = flow.run().wait(60)
    assert run.status == "failed"
    assert "boom" in str(run.error)
    assert run.step_status == {"slow": "cancelled", "boom": "failed", "after": "cancelled"}
    assert "cancelled" in set(run.steps["status"])


def test_on_failure_continue_skips_only_downstream_steps_with_the_reason() -> None:
    flow = flownb.Flow("continue", db=":memory:")

    @flow.step(on_failure="continue")
    def boom() -> None:
        raise RuntimeError("boom")

    @flow.step
    def child(boom: None) -> None:
        return None

    @flow.step
    def grandchild(child: None) -> None:
        return None

    @flow.step
    def unrelated() -> int:
        return 7

    run = flow.run().wait(60)
    assert run.status == "failed"
    assert run.outputs["unrelated"] == 7
    rows = run.steps.set_index("step")
    assert rows.loc["child", "status"] == "skipped"
    assert rows.loc["child", "reason"] == "upstream step 'boom' failed"
    assert rows.loc["grandchild", "status"] == "skipped"


def test_fallback_step_runs_in_place_of_a_failed_step() -> None:
    flow = flownb.Flow("fallback", db=":memory:")

    @flow.step
    def source() -> int:
        return 5

    @flow.step
    def cached_copy(source: int) -> int:
        return source * 100

    @flow.step(fallback="cached_copy", retries=1, retry_delay=0)
    def live(source: int) -> int:
        raise ConnectionError("down")

    @flow.step
    def report(live: int) -> int:
        return live + 1

    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["report"] == 501
    rows = run.steps
    live_rows = rows[rows["step"] == "live"].sort_values("attempt")
    assert list(live_rows["status"]) == ["failed", "failed", "succeeded"]
    assert "fallback 'cached_copy'" in live_rows["reason"].iloc[-1]


def test_callable_fallback_gets_the_error() -> None:
    flow = flownb.Flow("fallback_fn", db=":memory:")

    @flow.step(fallback=lambda error: f"default after {type(error).__name__}")
    def fragile() -> str:
        raise KeyError("x")

    assert flow.run().wait(60).outputs["fragile"] == "default after KeyError"


def test_when_false_skips_the_step_and_its_dependents() -> None:
    flow = flownb.Flow("when", db=":memory:")

    @flow.step(when="params.enabled")
    def optional() -> int:
        return 1

    @flow.step
    def uses(optional: int) -> int:
        return optional

    run = flow.run(params={"enabled": False}).wait(60)
    assert run.status == "succeeded"
    rows = run.steps.set_index("step")
    assert rows.loc["optional", "status"] == "skipped"
    assert "when='params.enabled'" in rows.loc["optional", "reason"]
    assert rows.loc["uses", "status"] == "skipped"
    assert flow.run(params={"enabled": True}).wait(60).outputs["uses"] == 1


def test_foreach_runs_one_attempt_per_item_in_order_within_concurrency() -> None:
    flow = flownb.Flow("foreach", db=":memory:")
    pairs = threading.Barrier(2, timeout=30)  # items meet in pairs: a limit of one would time out
    active = 0
    peak = 0
    lock = threading.Lock()

    @flow.step
    def items() -> list[int]:
        return [3, 1, 2, 5]

    @flow.step(foreach="items", concurrency=2)
    def square(item: int, index: int) -> tuple[int, int]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        pairs.wait()
        with lock:
            active -= 1
        return index, item * item

    run = flow.run().wait(60)
    assert run.outputs["square"] == [(0, 9), (1, 1), (2, 4), (3, 25)]
    assert peak == 2  # two at a time, never a third beside them
    item_rows = run.steps[run.steps["step"].str.startswith("square[")].set_index("step")
    assert sorted(item_rows.index) == ["square[0]", "square[1]", "square[2]", "square[3]"]
    # the record agrees: every item ran beside another one
    for name, row in item_rows.iterrows():
        others = item_rows.drop(index=name)
        assert ((others["started_at"] < row["ended_at"]) & (row["started_at"] < others["ended_at"])).any(), name


def test_repeat_until_reruns_until_the_expression_holds() -> None:
    flow = flownb.Flow("repeat", db=":memory:")
    polls = 0

    @flow.step(repeat_until="poll.ready", max_iterations=10)
    def poll() -> dict[str, bool]:
        nonlocal polls
        polls += 1
        return {"ready": polls >= 3}

    run = flow.run().wait(60)
    assert run.outputs["poll"] == {"ready": True}
    assert list(run.steps["attempt"]) == [1, 2, 3]


def test_repeat_until_gives_up_after_max_iterations() -> None:
    flow = flownb.Flow("repeat_max", db=":memory:")

    @flow.step(repeat_until="false", max_iterations=3)
    def never() -> int:
        return 0

    run = flow.run().wait(60)
    assert run.status == "failed" and "max_iterations=3" in str(run.error)


def test_cancel_stops_a_run() -> None:
    flow = flownb.Flow("cancel", db=":memory:")
    started = threading.Event()

    @flow.step
    async def long() -> None:
        started.set()
        await asyncio.sleep(30)

    run = flow.run()
    assert started.wait(30)
    run.cancel()
    run.wait(60)
    assert run.status == "cancelled"
    assert isinstance(run.error, flownb.RunCancelled)
    with pytest.raises(flownb.RunCancelled):
        run.raise_for_status()


def test_wait_timeout_raises_and_names_the_run() -> None:
    flow = flownb.Flow("wait_timeout", db=":memory:")
    release = threading.Event()

    @flow.step
    def hold() -> None:
        release.wait(30)

    run = flow.run()
    with pytest.raises(TimeoutError, match=run.id):
        run.wait(0.05)
    release.set()
    run.wait(60)


def test_fail_fast_records_a_running_thread_step_as_cancelled() -> None:
    flow = flownb.Flow("stop_threads", db=":memory:")
    started = threading.Event()
    release = threading.Event()

    @flow.step
    def blocking() -> None:  # a plain sync step: the engine's fast path
        started.set()
        release.wait(30)

    @flow.step
    def boom() -> None:
        started.wait(30)
        raise RuntimeError("boom")

    run = flow.run().wait(60)
    release.set()
    assert run.status == "failed"
    assert run.step_status["blocking"] == "cancelled"
    rows = run.steps.set_index("step")
    assert rows.loc["blocking", "status"] == "cancelled"
