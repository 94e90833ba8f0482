"""The schedules table (flownb/store/schedules.py): validation, idempotent definition, one claim per fire."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

import flownb
from flownb.store import open_store, schedules
from flownb.store.memory import MemoryStore


@pytest.fixture(params=["duckdb", "memory"])
def store(request: pytest.FixtureRequest, db: str):
    return open_store(db) if request.param == "duckdb" else MemoryStore()


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": ""}, "empty"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "* * * * *", "tz": "../../etc/passwd"}, "unknown time zone"),
        ({"cron": "* * * * *", "catchup": "all"}, "catchup"),
        ({"cron": "* * * * *", "name": "two words"}, "schedule name"),
        ({"cron": "* * * * *", "params": {"f": object()}}, "JSON"),
        ({"cron": "* * * * *", "params": [1]}, "dict"),
    ],
)
def test_a_bad_definition_is_refused_before_anything_is_stored(db: str, kwargs: dict, says: str) -> None:
    flow = flownb.Flow("shop", db=db)
    cron = kwargs.pop("cron")
    with pytest.raises(flownb.FlowDefinitionError, match=says):
        flow.schedule(cron, **kwargs)
    assert schedules.all_schedules(open_store(db)) == []


def test_flow_schedule_stores_and_defining_again_changes_nothing(db: str) -> None:
    flow = flownb.Flow("shop orders", db=db)
    first = flow.schedule("*/5 * * * *", tz="Europe/Paris", params={"n": 1})
    assert first.name == "shop-orders"  # from the flow's name, made a valid schedule name
    assert (first.flow, first.cron, first.tz, first.params, first.catchup) == (
        "shop orders", "*/5 * * * *", "Europe/Paris", {"n": 1}, "latest",
    )
    again = flow.schedule("*/5  *  * * *", tz="Europe/Paris", params={"n": 1})  # same, spaced differently
    assert again == first
    # the table users query
    df = flownb.sql("SELECT name, flow, cron, tz FROM schedules", db=db)
    assert df.to_dict(orient="records") == [
        {"name": "shop-orders", "flow": "shop orders", "cron": "*/5 * * * *", "tz": "Europe/Paris"}
    ]


def test_new_params_keep_the_fire_reached_and_a_new_cron_counts_from_now(store) -> None:
    s = schedules.define(store, schedules.validate("f", "0 * * * *", name="hourly"))
    fire = s.latest_fire(datetime.now(UTC)) + timedelta(hours=1)
    assert schedules.claim(store, "hourly", fire, s.run_id(fire), by="test")
    kept = schedules.define(store, schedules.validate("f", "0 * * * *", name="hourly", params={"x": 2}))
    assert kept.last_fire == fire and kept.params == {"x": 2}
    moved = schedules.define(store, schedules.validate("f", "30 * * * *", name="hourly"))
    assert moved.last_fire is not None and moved.last_fire < fire and moved.last_run_id is None


def test_a_fire_is_claimed_once_among_racing_claimers(store) -> None:
    s = schedules.define(store, schedules.validate("f", "* * * * * *", name="every-second"))
    fire = s.next_fire(datetime.now(UTC) + timedelta(seconds=5))
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.append(schedules.claim(store, s.name, fire, s.run_id(fire), by=threading.current_thread().name))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    # an earlier fire can no longer be claimed either: fires only move forward
    assert not schedules.claim(store, s.name, fire - timedelta(seconds=1), None, by="late")
    row = schedules.get(store, s.name)
    assert row is not None and row.last_fire == fire and row.last_run_id == s.run_id(fire)


def test_a_stale_claim_is_taken_over_by_one_taker(store) -> None:
    s = schedules.define(store, schedules.validate("f", "* * * * *", name="m"))
    fire = s.next_fire(datetime.now(UTC))
    assert schedules.claim(store, "m", fire, s.run_id(fire), by="dead")
    claimed = schedules.get(store, "m")
    assert claimed is not None and claimed.claimed_at is not None
    assert schedules.reclaim(store, "m", fire, claimed.claimed_at, by="a")
    assert not schedules.reclaim(store, "m", fire, claimed.claimed_at, by="b")


def test_list_and_remove(store) -> None:
    for name, flow in (("b", "two"), ("a", "one"), ("c", "one")):
        schedules.define(store, schedules.validate(flow, "@daily", name=name))
    assert [s.name for s in schedules.all_schedules(store)] == ["a", "b", "c"]
    assert [s.name for s in schedules.all_schedules(store, flow="one")] == ["a", "c"]
    assert schedules.remove(store, "b") and not schedules.remove(store, "b")
    assert [s.name for s in schedules.all_schedules(store)] == ["a", "c"]


def test_run_ids_are_derived_from_the_schedule_and_the_fire_time() -> None:
    s = schedules.validate("f", "0 2 * * *", name="nightly", tz="Europe/Paris")
    fire = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)
    assert s.run_id(fire) == "nightly-20260115T010000Z"
    assert s.run_id(fire) == s.run_id(fire.astimezone(s.next_fire(fire).tzinfo))


def _fires(s: schedules.Schedule, start: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        start = s.next_fire(start)
        out.append(start)
    return out


def test_time_zones_and_dst_follow_croniter() -> None:
    # spring forward: 02:30 does not exist on 2026-03-08 in New York; croniter fires at 03:00 EDT
    s = schedules.validate("f", "30 2 * * *", tz="America/New_York")
    assert _fires(s, datetime(2026, 3, 6, 12, tzinfo=UTC), 3) == [
        datetime(2026, 3, 7, 7, 30, tzinfo=UTC),  # 02:30 EST
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT, the first valid time after
        datetime(2026, 3, 9, 6, 30, tzinfo=UTC),  # 02:30 EDT
    ]
    # fall back: 01:30 happens twice on 2026-11-01; croniter fires at both
    s = schedules.validate("f", "30 1 * * *", tz="America/New_York")
    assert _fires(s, datetime(2026, 10, 31, 12, tzinfo=UTC), 3) == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # 01:30 EST
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
    ]
    # each is its own fire time, so each gets its own run id
    assert len({s.run_id(f) for f in _fires(s, datetime(2026, 10, 31, 12, tzinfo=UTC), 3)}) == 3


def test_latest_fire_includes_its_own_time() -> None:
    s = schedules.validate("f", "0 * * * *")
    on_the_hour = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert s.latest_fire(on_the_hour) == on_the_hour
    assert s.latest_fire(on_the_hour - timedelta(seconds=1)) == on_the_hour - timedelta(hours=1)
    assert s.next_fire(on_the_hour) == on_the_hour + timedelta(hours=1)
