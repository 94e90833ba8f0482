"""The one reader of events (store/events.py): order, duplicates, and a start committed late."""

from __future__ import annotations

from flownb.store.base import Event
from flownb.store.events import RunFold, StepStatus


def ev(seq: int, event: str, step: str | None = None, **payload: object) -> Event:
    return Event("r1", seq, event, step, dict(payload), at=1000.0 + seq)


def test_a_start_committed_after_its_end_changes_nothing() -> None:
    fold = RunFold()
    fold.apply(ev(1, "run_started", flow="f", status="pending"))
    fold.apply(ev(3, "step_finished", "a", attempt=1, status="succeeded", started_at=1001.5))
    assert fold.apply(ev(2, "step_started", "a", attempt=1, status="running"))  # late, lower seq: still folded
    assert fold.steps["a"].status == StepStatus.SUCCEEDED
    assert fold.steps["a"].started_at == 1001.5
    assert not fold.apply(ev(3, "step_finished", "a", attempt=1, status="failed"))  # seen: ignored
    assert fold.steps["a"].status == StepStatus.SUCCEEDED and fold.last_seq == 3


def test_a_retry_that_starts_after_a_failed_attempt_is_running() -> None:
    fold = RunFold.of([
        ev(1, "run_started", flow="f", status="pending"),
        ev(2, "step_finished", "a", attempt=1, status="failed", error="boom"),
        ev(3, "step_retrying", "a", attempt=1, delay_s=1, error="boom"),
        ev(4, "step_started", "a", attempt=2, status="running"),
    ])  # fmt: skip
    assert fold.steps["a"].status == StepStatus.RUNNING and fold.steps["a"].attempts == 2
