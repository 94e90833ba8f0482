"""``run.observe``: the public stream the live view and the CLI's progress are built on."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import flownb
from flownb import Observer
from flownb.store.base import Event
from flownb.store.events import RunFold

DEADLINE = 60


class Recording(Observer):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.logs: list[tuple[str, int, str, Any]] = []
        self.outputs: dict[str, Any] = {}

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def on_log(self, step: str, attempt: int, stream: str, text: Any) -> None:
        self.logs.append((step, attempt, stream, text))

    def on_output(self, step: str, value: Any) -> None:
        self.outputs[step] = value


def a_held_flow(tmp_path: Path, go: threading.Event) -> flownb.Flow:
    flow = flownb.Flow("observed", db=str(tmp_path / "o.duckdb"))
    tries: list[int] = []

    @flow.step
    def first() -> int:
        return 1

    @flow.step(retries=1, retry_delay=0)
    def held(first: int) -> int:
        print("held once", flush=True)
        assert go.wait(DEADLINE)
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("try again")
        return first + 1

    @flow.step
    def last(held: int) -> int:
        print("last says", held)
        return held * 10

    return flow


def test_a_late_observer_hears_every_event_once_with_the_replay(tmp_path: Path) -> None:
    go = threading.Event()
    run = a_held_flow(tmp_path, go).run()
    deadline = time.monotonic() + DEADLINE
    while run.step_status.get("held") != "running":
        assert time.monotonic() < deadline, "the held step never started"
        time.sleep(0.01)
    heard = Recording()
    subscription = run.observe(heard)  # mid-run: what was recorded comes first, then the rest
    go.set()
    assert run.wait(DEADLINE).status == "succeeded"
    subscription.close()
    seqs = [e.seq for e in heard.events]
    assert len(seqs) == len(set(seqs)), "an event was heard twice"
    stored = {e.seq for e in run.events()}
    assert stored <= set(seqs), "an event in the store was never heard"
    fold = RunFold.of(heard.events)
    assert fold.status == "succeeded" and fold.steps["held"].attempts == 2
    assert heard.events[0].event == "run_started" and heard.events[-1].event == "run_ended"
    assert heard.outputs == {"held": 2, "last": 20}  # outputs from the subscription on
    said = "".join(str(t) for s, a, stream, t in heard.logs if (s, a, stream) == ("last", 1, "stdout"))
    assert said == "last says 2\n", heard.logs


def test_watching_starts_hears_a_run_from_its_first_event(tmp_path: Path) -> None:
    go = threading.Event()
    go.set()
    heard = Recording()
    runs: list[flownb.Run] = []

    def hook(run: flownb.Run) -> None:
        runs.append(run)
        run.observe(heard, replay=False)

    stop = flownb.watch_runs(hook)
    try:
        run = a_held_flow(tmp_path, go).run().wait(DEADLINE)
    finally:
        stop()
    assert [r.id for r in runs] == [run.id]
    assert [e.seq for e in heard.events] == sorted(e.seq for e in heard.events)
    assert heard.events[0].event == "run_started"
    assert heard.outputs == {"first": 1, "held": 2, "last": 20}
    attempts = {(s, a) for s, a, _, t in heard.logs if "held once" in str(t)}
    assert attempts == {("held", 1), ("held", 2)}, heard.logs
    a_held_flow(tmp_path, go).run().wait(DEADLINE)
    assert [r.id for r in runs] == [run.id], "a stopped watch still heard a run"


def test_an_observer_that_raises_never_breaks_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Observer):
        def on_event(self, event: Event) -> None:
            raise RuntimeError("observer bug")

        def on_output(self, step: str, value: Any) -> None:
            raise RuntimeError("observer bug")

    go = threading.Event()
    go.set()
    stop = flownb.watch_runs(lambda run: run.observe(Broken(), replay=False) and None)
    try:
        run = a_held_flow(tmp_path, go).run().wait(DEADLINE)
    finally:
        stop()
    assert run.status == "succeeded" and run.outputs["last"] == 20
    assert "observer" in caplog.text


def test_a_closed_subscription_hears_nothing_more(tmp_path: Path) -> None:
    go = threading.Event()
    run = a_held_flow(tmp_path, go).run()
    heard = Recording()
    run.observe(heard).close()
    count, outputs = len(heard.events), dict(heard.outputs)
    go.set()
    run.wait(DEADLINE)
    assert len(heard.events) == count and heard.outputs == outputs
    assert "last" not in heard.outputs


def test_a_run_of_another_process_is_followed_through_its_events(tmp_path: Path) -> None:
    go = threading.Event()
    go.set()
    db = str(tmp_path / "o.duckdb")
    run = a_held_flow(tmp_path, go).run().wait(DEADLINE)
    attached = flownb.attach(run.id, db=db)
    assert attached.parent_run_id is None and not attached.resumed
    assert set(attached.graph.specs) == {"first", "held", "last"}
    with pytest.raises(flownb.FlownbError, match="not running in this process"):
        attached.observe(Recording())


def test_an_observer_hears_the_rows_the_table_gets_a_start_when_it_is_recorded(tmp_path: Path) -> None:
    flow = flownb.Flow("starts", db=str(tmp_path / "s.duckdb"))

    @flow.step
    def quick() -> int:
        return 1

    @flow.step
    def slow(quick: int) -> int:
        time.sleep(0.5)  # ten times the 50 ms a start is held back
        return quick + 1

    heard = Recording()
    stop = flownb.watch_runs(lambda run: run.observe(heard, replay=False))
    try:
        run = flow.run().wait(DEADLINE)
    finally:
        stop()
    named = [(e.event, e.step) for e in heard.events if e.step]
    assert named.index(("step_started", "slow")) < named.index(("step_finished", "slow"))
    table = run.events()
    # the rows the table got, no more: a quick attempt's start, held back 50 ms, is usually
    # never made (its end says when it started), and then never heard either
    assert sorted((e.seq, e.event) for e in table) == sorted((e.seq, e.event) for e in heard.events)
    finished = next(e for e in heard.events if e.event == "step_finished" and e.step == "quick")
    assert finished.payload["started_at"] <= finished.at
