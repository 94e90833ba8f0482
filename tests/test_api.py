"""The facade's store: which store a ``Flow`` records into."""

from __future__ import annotations

import flownb
from flownb.store.base import open_store
from flownb.store.memory import MemoryStore


def one_step_flow(name: str, db: object) -> flownb.Flow:
    flow = flownb.Flow(name, db=db)
    flow.step(lambda: 1, name="one")
    return flow


def test_each_memory_flow_has_its_own_store() -> None:
    first, second = one_step_flow("first", ":memory:"), one_step_flow("second", ":memory:")
    assert isinstance(first.db, MemoryStore) and isinstance(second.db, MemoryStore)
    assert first.db is not second.db
    a = first.run().wait(60)
    b = second.run().wait(60)
    assert list(flownb.history(first.db)["run_id"]) == [a.id]
    assert list(flownb.history(second.db)["run_id"]) == [b.id]


def test_a_memory_flow_keeps_its_store_across_runs() -> None:
    flow = one_step_flow("twice", ":memory:")
    ids = {flow.run().wait(60).id, flow.run().wait(60).id}
    assert set(flownb.history(flow.db)["run_id"]) == ids


def test_memory_named_elsewhere_is_a_new_empty_store() -> None:
    flow = one_step_flow("private", ":memory:")
    flow.run().wait(60)
    assert open_store(":memory:") is not flow.db
    assert flownb.history(":memory:").empty


def test_a_flow_takes_a_store_object() -> None:
    store = MemoryStore()
    first, second = one_step_flow("a", store), one_step_flow("b", store)
    assert first.db is store
    runs = {first.run().wait(60).id, second.run().wait(60).id}
    assert set(flownb.history(store)["run_id"]) == runs
    steps = flownb.sql("SELECT run_id, step, status FROM steps", db=store)
    assert set(steps["run_id"]) == runs and set(steps["status"]) == {"succeeded"}
