"""A run's params come back exactly on resume; what cannot be recorded is refused up front.

Issue 14, failure #5: datetime, Decimal, set and bytes came back as repr strings, NaN
as None, tuples as lists, ``{1: ...}`` as ``{"1": ...}``; ``2**70`` or a lone
surrogate ran the steps with no ``runs`` row, and resume raised StopIteration; a step
printing ``'\\ud800'`` failed its run.
"""

from __future__ import annotations

import datetime as dt
import fractions
import itertools
import math
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flownb
from flownb.engine.context import is_secret_name
from flownb.store.base import Event, forget_store, open_store

SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udc80x"])
names = st.text(min_size=1, max_size=8).filter(lambda k: not is_secret_name(k))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # past 64 bits too
    st.integers(min_value=2**63, max_value=2**80),
    st.floats(),  # NaN, infinities, -0.0
    st.text(max_size=10),
    SURROGATES,
    st.binary(max_size=10),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.decimals(allow_nan=False, places=3),
    st.fractions(max_denominator=100),
    st.complex_numbers(allow_nan=False),
    st.uuids(),
)
hashables = st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.tuples(st.integers()))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(names, inner, max_size=3),
        st.dictionaries(st.integers(), inner, max_size=2),  # int keys
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
    ),
    max_leaves=8,
)
params_strategy = st.dictionaries(names, values, max_size=5) | st.dictionaries(
    names | st.integers(), values, min_size=1, max_size=3
)


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down; NaN equals NaN, -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    return bool(a == b)


class Seen:
    """A flow whose step fails on the first run and records the params it gets."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.fail = True
        self.got: list[dict[str, Any]] = []

    def flow(self) -> flownb.Flow:
        flow = flownb.Flow("params", db=self.db)

        @flow.step
        def look(params: dict[str, Any]) -> int:
            self.got.append(params)
            if self.fail:
                raise RuntimeError("the first run fails")
            return 1

        return flow


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("params") / "store.duckdb")
    yield path
    forget_store(open_store(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(params=params_strategy)
def test_params_round_trip_through_a_run_and_a_resume(module_db: str, params: dict[Any, Any]) -> None:
    seen = Seen(module_db)
    first = seen.flow().run(params=params).wait(60)
    assert first.status == "failed"
    seen.fail = False
    # a fresh Flow object on the same file: the params can only come from the store
    again = seen.flow().resume(first.id).wait(60)
    assert again.status == "succeeded", again.error
    assert same(seen.got[-1], params), (seen.got[-1], params)


def test_params_of_each_kind_round_trip(db: str) -> None:
    frame = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="k"))
    params = {
        "when": dt.datetime(2024, 3, 31, 2, 30, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 1),
        "price": Decimal("10.10"),
        "tags": {"a", "b"},
        "raw": b"\x00\xff",
        "nan": float("nan"),
        "pair": (1, 2),
        "by_id": {1: "one"},
        "n": 2**70,
        "odd": "\ud800",
        "id": uuid.UUID(int=7),
        "third": fractions.Fraction(1, 3),
        "plain": {"x": [1, 2.5, None]},
    }
    seen = Seen(db)
    first = seen.flow().run(params={**params, "frame": frame}).wait(60)
    assert first.status == "failed"
    row = flownb.sql("SELECT status, params FROM runs WHERE run_id = ?", db=db, params=[first.id])
    assert list(row["status"]) == ["failed"]  # the run is recorded: it has a runs row
    seen.fail = False
    again = seen.flow().resume(first.id).wait(60)
    assert again.status == "succeeded", again.error
    got = seen.got[-1]
    pd.testing.assert_frame_equal(got.pop("frame"), frame)
    assert same(got, params)


def test_plain_params_stay_readable_json_in_the_runs_view(db: str) -> None:
    flow = flownb.Flow("readable", db=db)
    flow.step(lambda: 1, name="one")
    run = flow.run(params={"source": "a.csv", "n": 3, "when": dt.date(2024, 1, 2)}).wait(60)
    shown = flownb.sql("SELECT params->>'source' AS source, params->>'n' AS n, params->>'when' AS w FROM runs", db=db)
    assert (shown["source"][0], shown["n"][0]) == ("a.csv", "3")
    assert "2024, 1, 2" in shown["w"][0]  # stored as a value; shown as text
    assert run.status == "succeeded"


def test_secret_params_are_redacted_in_the_record_and_on_resume(db: str) -> None:
    seen = Seen(db)
    params = {"api_token": "s3cr3t-1", "nested": ({"password": "s3cr3t-2", "user": "ann"},), "keep": (1, 2)}
    first = seen.flow().run(params=params).wait(60)
    assert seen.got[-1]["api_token"] == "s3cr3t-1"  # the run itself gets the real values
    events = flownb.sql("SELECT payload FROM events WHERE run_id = ?", db=db, params=[first.id])
    assert not any("s3cr3t" in p for p in events["payload"])
    blobs = flownb.sql("SELECT data FROM _values WHERE run_id = ?", db=db, params=[first.id])
    assert blobs["data"].size and not any(b"s3cr3t" in bytes(b) for b in blobs["data"])
    seen.fail = False
    seen.flow().resume(first.id).wait(60)
    got = seen.got[-1]
    assert got["api_token"] == "[redacted]"
    assert got["nested"] == ({"password": "[redacted]", "user": "ann"},)
    assert got["keep"] == (1, 2)


def test_a_param_that_cannot_be_recorded_refuses_the_run_before_any_step(db: str) -> None:
    seen = Seen(db)
    with pytest.raises(flownb.FlownbError, match=r"param 'lock' .*cannot be recorded .*cannot pickle"):
        seen.flow().run(params={"n": 1, "lock": threading.Lock()})
    assert seen.got == []
    assert flownb.sql("SELECT count(*) AS n FROM runs", db=db)["n"][0] == 0


def test_resuming_a_run_without_a_start_record_says_so(db: str) -> None:
    store = open_store(db)
    store.submit([Event("0123456789ab", 1, "step_finished", "look", {"status": "failed", "attempt": 1})]).result(30)
    with pytest.raises(flownb.FlownbError, match="no record of its start"):
        Seen(db).flow().resume("0123456789ab")


def test_a_step_printing_a_lone_surrogate_does_not_fail_its_run(db: str) -> None:
    flow = flownb.Flow("surrogate", db=db)

    @flow.step
    def shout() -> int:
        print("bad \ud800 text")
        return 1

    @flow.step
    def after(shout: int) -> int:
        raise ValueError("worse \udfff error")

    run = flow.run().wait(60)
    assert run.status == "failed"  # after's own error, recorded, not a write failure
    steps = flownb.sql("SELECT step, status, stdout, error FROM steps WHERE run_id = ?", db=db, params=[run.id])
    rows = steps.set_index("step")
    assert rows.loc["shout", "status"] == "succeeded"
    assert rows.loc["shout", "stdout"] == "bad \\ud800 text\n"  # escaped, never fatal
    assert rows.loc["after", "error"] == "worse \\udfff error"
    runs = flownb.sql("SELECT status FROM runs WHERE run_id = ?", db=db, params=[run.id])
    assert list(runs["status"]) == ["failed"]


def test_many_runs_share_the_params_store_without_mixing_them_up(tmp_path: Path) -> None:
    db = str(tmp_path / "many.duckdb")
    seen = Seen(db)
    ids = []
    for i in itertools.islice(itertools.count(), 3):
        seen.fail = True
        ids.append((seen.flow().run(params={"i": (i,)}).wait(60).id, i))
    seen.fail = False
    for run_id, i in reversed(ids):
        seen.flow().resume(run_id).wait(60)
        assert seen.got[-1] == {"i": (i,)}
    forget_store(open_store(db))
