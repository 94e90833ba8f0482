"""The engine's clock is injectable: long backoffs run at once, and records say when things happened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import flownb
from flownb.engine.clock import SYSTEM, ManualClock
from flownb.engine.runtime import runtime


@pytest.fixture
def manual_clock() -> Iterator[ManualClock]:
    clock = ManualClock()
    runtime().clock = clock
    yield clock
    runtime().clock = SYSTEM


def test_retries_wait_on_the_runtime_clock(manual_clock: ManualClock) -> None:
    flow = flownb.Flow("patient", db=":memory:")
    calls: list[int] = []

    @flow.step(retries=3, backoff="exponential", retry_delay=600, max_delay=3600)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("not yet")
        return "done"

    run = flow.run().wait(30)  # four attempts and 70 minutes of backoff, in no real time
    assert run.status == "succeeded", run.error
    assert manual_clock.slept == [600, 1200, 2400]
    starts = run.steps.sort_values("attempt")["started_at"].tolist()
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == pytest.approx([600, 1200, 2400])  # the records tell the clock's time
