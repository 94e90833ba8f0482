"""What the recorder commits: an attempt's end says when it started; a long one's start is seen while it runs."""

from __future__ import annotations

import threading
import time

import flownb


def test_an_attempt_end_says_when_it_started(db: str) -> None:
    """A short attempt is usually recorded by its end alone (its start is held back
    for up to 50 ms); either way the end carries ``started_at`` and the view is whole."""
    flow = flownb.Flow("one-row", db=db)
    flow.step(lambda: 42, name="quick")

    run = flow.run().wait(60)

    assert run.status == "succeeded", run.error
    events = flownb.sql(
        "SELECT event, payload->>'started_at' AS started_at FROM events WHERE run_id = ? AND step = 'quick' ORDER BY seq",
        db=db, params=[run.id],
    )  # fmt: skip
    assert events["event"].tolist() in (["step_finished"], ["step_started", "step_finished"])
    assert float(events["started_at"].iloc[-1]) > 0
    row = run.steps.iloc[0]
    assert row["status"] == "succeeded"
    assert row["started_at"] <= row["ended_at"]


def test_a_running_attempt_is_committed_while_it_runs(db: str) -> None:
    """A step still running (say, when the process dies) must show in the store."""
    flow = flownb.Flow("long-start", db=db)
    release = threading.Event()
    flow.step(lambda: release.wait(60), name="slow")

    run = flow.run()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and seen != ["running"]:
            seen = flownb.sql(
                "SELECT status FROM steps WHERE run_id = ? AND step = 'slow'", db=db, params=[run.id]
            )["status"].tolist()
            time.sleep(0.02)
    finally:
        release.set()
    assert seen == ["running"]
    assert run.wait(60).status == "succeeded", run.error
    events = flownb.sql("SELECT event FROM events WHERE run_id = ? AND step = 'slow' ORDER BY seq", db=db,
                        params=[run.id])  # fmt: skip
    assert events["event"].tolist() == ["step_started", "step_finished"]
