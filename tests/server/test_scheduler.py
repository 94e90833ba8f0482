"""The schedule loop's decisions, on a clock the test moves (no server, no waiting)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flownb.server.http import ApiError
from flownb.server.scheduler import GRACE, LEAD, RECOVER_AFTER, Scheduler
from flownb.store import open_store, schedules
from flownb.store.memory import MemoryStore

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class FakeRun:
    id: str
    status: str = "pending"


@dataclass
class FakeFlows:
    """ServedFlows' surface the loop uses; starts are recorded, a run id starts once (as the engine does)."""

    store: Any
    names: tuple[str, ...] = ("f",)
    started: list[tuple[str, dict, str, str | None]] = field(default_factory=list)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def start(self, name: str, params: Any, *, trigger: str, run_id: str | None = None) -> FakeRun:
        if any(r == run_id for *_, r in self.started):
            raise ApiError(409, f"run {run_id} exists")
        self.started.append((name, params, trigger, run_id))
        return FakeRun(run_id or "x")


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


@pytest.fixture(params=["memory", "duckdb"])
def store(request: pytest.FixtureRequest, db: str) -> Any:
    return MemoryStore() if request.param == "memory" else open_store(db)


def _define(store: Any, cron: str, *, name: str = "s", catchup: str = "latest", last: datetime = T0) -> None:
    schedules.define(store, schedules.validate("f", cron, name=name, catchup=catchup, params={"k": 1}))
    # as if defined at `last`: the fire it reached
    if isinstance(store, MemoryStore):
        from dataclasses import replace

        rows = schedules._memory(store)._rows
        rows[name] = replace(rows[name], last_fire=last, created_at=last)
    else:
        store.query("UPDATE schedules SET last_fire = ?, created_at = ? WHERE name = ?", [last, last, name])


def test_each_due_fire_starts_one_run_with_its_derived_id(store) -> None:
    _define(store, "* * * * * *")
    flows, clock = FakeFlows(store), Clock(T0 + timedelta(milliseconds=400))
    loop = Scheduler(flows, clock=clock)  # type: ignore[arg-type]
    assert loop.tick() == pytest.approx(0.6 - LEAD)  # asleep until just before the next second
    assert flows.started == []
    for second in range(1, 4):
        clock.at = T0 + timedelta(seconds=second, milliseconds=5)
        loop.tick()
        loop.tick()  # a second look at the same moment starts nothing more
    assert flows.started == [
        ("f", {"k": 1}, "schedule", f"s-20260601T12000{i}Z") for i in (1, 2, 3)
    ]
    # late, but within the grace: every fire still runs, in order
    clock.at = T0 + timedelta(seconds=6, milliseconds=1)
    loop.tick()
    assert [r for *_, r in flows.started][3:] == [f"s-20260601T12000{i}Z" for i in (4, 5, 6)]
    assert all(not f.missed for f in loop.fired)


def test_two_loops_on_one_store_start_each_fire_once(store) -> None:
    _define(store, "* * * * * *")
    flows_a, flows_b = FakeFlows(store), FakeFlows(store)
    clock = Clock(T0)
    a, b = Scheduler(flows_a, clock=clock), Scheduler(flows_b, clock=clock)  # type: ignore[arg-type]
    for i in range(1, 21):
        clock.at = T0 + timedelta(seconds=i, milliseconds=1)
        (a, b)[i % 2].tick()
        (b, a)[i % 2].tick()
    ids = [r for *_, r in flows_a.started + flows_b.started]
    assert len(ids) == 20 == len(set(ids))


def test_missed_fires_run_once_with_latest_and_not_at_all_with_none(store) -> None:
    _define(store, "0 * * * *", name="latest", last=T0 - timedelta(hours=5))
    _define(store, "0 * * * *", name="none", catchup="none", last=T0 - timedelta(hours=5))
    flows = FakeFlows(store)
    clock = Clock(T0 + timedelta(minutes=20))
    loop = Scheduler(flows, clock=clock)  # type: ignore[arg-type]
    loop.tick()
    assert flows.started == [("f", {"k": 1}, "schedule", "latest-20260601T120000Z")]
    assert loop.fired[0].missed
    # a restart (a new loop) catches up nothing more; the "none" schedule moved on without a run
    Scheduler(flows, clock=clock).tick()  # type: ignore[arg-type]
    assert len(flows.started) == 1
    skipped = schedules.get(store, "none")
    assert skipped is not None and skipped.last_fire == T0 and skipped.last_run_id is None
    # and the next hour runs both, as usual
    clock.at = T0 + timedelta(hours=1, seconds=1)
    loop.tick()
    assert sorted(r for *_, r in flows.started[1:]) == ["latest-20260601T130000Z", "none-20260601T130000Z"]


def test_a_gap_longer_than_the_grace_is_one_catch_up_then_the_due_fires(store) -> None:
    _define(store, "* * * * * *")
    flows = FakeFlows(store)
    clock = Clock(T0 + timedelta(seconds=60, milliseconds=1))  # a minute with no server
    Scheduler(flows, clock=clock).tick()  # type: ignore[arg-type]
    ids = [r for *_, r in flows.started]
    edge = int(60 - GRACE)
    assert ids[0] == f"s-20260601T1200{edge:02d}Z"  # the latest missed fire, once
    assert ids[1:] == [f"s-20260601T1200{s:02d}Z" for s in range(edge + 1, 60)] + ["s-20260601T120100Z"]


def test_a_claim_whose_run_never_started_is_started_once(store) -> None:
    _define(store, "0 * * * *", last=T0 - timedelta(minutes=30))
    s = schedules.get(store, "s")
    assert s is not None
    assert schedules.claim(store, "s", T0, s.run_id(T0), by="a dead server", at=T0)  # and then it died
    flows = FakeFlows(store)
    clock = Clock(T0 + timedelta(seconds=1))
    loop = Scheduler(flows, clock=clock)  # type: ignore[arg-type]
    loop.tick()
    assert flows.started == []  # too fresh to tell from a live claimer that is starting it
    clock.at = T0 + timedelta(seconds=RECOVER_AFTER + 30)
    other = Scheduler(FakeFlows(store), clock=clock)  # type: ignore[arg-type]
    loop.tick()
    other.tick()
    assert flows.started == [("f", {"k": 1}, "schedule", "s-20260601T120000Z")]
    assert other.flows.started == []  # type: ignore[attr-defined]


def test_schedules_of_flows_served_elsewhere_are_left_alone(store) -> None:
    _define(store, "* * * * * *")
    flows = FakeFlows(store, names=("g",))
    Scheduler(flows, clock=Clock(T0 + timedelta(seconds=3))).tick()  # type: ignore[arg-type]
    assert flows.started == []
    row = schedules.get(store, "s")
    assert row is not None and row.last_fire == T0
