"""Tables round-trip exactly through the store: Arrow with its pandas metadata.

The property test draws frames over index kinds, dtypes, categoricals, time
zones, nullable types and empty frames, and checks that each comes back from a
real DuckDB file store equal with ``check_exact=True``, with the same attrs,
index names and column types, as ``arrow:pandas`` (never a pickled fallback),
and as a table users can ``SELECT`` from.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

import flownb
from flownb.store import codecs, frames
from flownb.store.base import Event, StoredValue
from flownb.store.duckdb_store import DuckDBStore

TIME_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]
NUMPY_KINDS = ["int64", "int32", "uint8", "float64", "float32", "bool", "datetime64[ns]", "timedelta64[ns]"]
OTHER_KINDS = ["Int64", "Float64", "boolean", "string", "str", "category", "tz", "object"]
texts = st.text(max_size=6)
stamps = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))


def _column(draw: st.DrawFn, kind: str, size: int) -> Any:
    """A column of ``size`` values of one of the OTHER_KINDS (nulls included)."""

    def values(elements: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(elements, min_size=size, max_size=size))

    if kind == "Int64":
        return pd.array(values(st.none() | st.integers(-(2**63), 2**63 - 1)), dtype="Int64")
    if kind == "Float64":
        return pd.array(values(st.none() | st.floats(allow_nan=False)), dtype="Float64")
    if kind == "boolean":
        return pd.array(values(st.none() | st.booleans()), dtype="boolean")
    if kind == "string":
        return pd.array(values(st.none() | texts), dtype="string")
    if kind == "str":  # pandas 3's default for text
        return pd.array(values(st.none() | texts), dtype="str")
    if kind == "category":
        categories = draw(st.lists(texts, unique=True, max_size=5))
        chosen = values(st.none() | st.sampled_from(categories)) if categories else [None] * size
        return pd.Categorical(chosen, categories=categories, ordered=draw(st.booleans()))
    if kind == "tz":
        utc = pd.DatetimeIndex(values(stamps)).tz_localize("UTC")
        return pd.array(utc.tz_convert(draw(st.sampled_from(TIME_ZONES))))
    if kind == "object":
        column = np.empty(size, dtype=object)
        column[:] = values(st.none() | texts)  # mixed types cannot be Arrow: see the pickled cases
        return column
    raise AssertionError(kind)


@st.composite
def indexes(draw: st.DrawFn) -> pd.Index:
    """Index kinds: ranges (any step), named ints, text, dates with a frequency and a
    time zone, categoricals, and MultiIndexes."""
    name = draw(st.none() | texts)
    size = draw(st.integers(0, 6))
    kind = draw(st.sampled_from(["range", "int", "text", "dates", "freq", "category", "multi"]))
    if kind == "range":
        index = draw(hpd.range_indexes(min_size=size, max_size=size))
        start, step = draw(st.integers(-5, 5)), draw(st.sampled_from([1, 2, -3]))
        return pd.RangeIndex(start, start + step * len(index), step, name=name)
    if kind == "int":
        return draw(hpd.indexes(dtype="int64", min_size=size, max_size=size, unique=draw(st.booleans()))).rename(name)
    if kind == "text":
        return draw(hpd.indexes(elements=texts, min_size=size, max_size=size)).astype("str").rename(name)
    if kind == "dates":
        return draw(hpd.indexes(dtype="datetime64[ns]", min_size=size, max_size=size)).rename(name)
    if kind == "freq":
        start = pd.Timestamp(draw(stamps))
        freq = draw(st.sampled_from(["D", "h", "15min", "MS", "W-SUN"]))
        tz = draw(st.none() | st.sampled_from(TIME_ZONES))
        return pd.date_range(start, periods=size, freq=freq, name=name).tz_localize(
            tz, ambiguous="NaT", nonexistent="NaT"
        ) if tz else pd.date_range(start, periods=size, freq=freq, name=name)  # fmt: skip
    if kind == "category":
        return pd.CategoricalIndex(_column(draw, "category", size), name=name)
    numbers = draw(st.lists(st.integers(-3, 3), min_size=size, max_size=size))
    words = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=size, max_size=size))
    names = draw(st.sampled_from([[None, None], ["n", "w"], ["n", None]]))
    return pd.MultiIndex.from_arrays([numbers, pd.array(words, dtype="str")], names=names)


@st.composite
def data_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Frames built on hypothesis.extra.pandas: numpy columns by ``data_frames``, the
    pandas extension dtypes beside them, labels all text or all ints."""
    index = draw(indexes())
    int_labels = draw(st.booleans())
    labels = draw(
        st.lists(st.integers(-2, 40) if int_labels else st.text(min_size=1, max_size=5), unique=True, max_size=6)
    )
    kinds = [draw(st.sampled_from(NUMPY_KINDS + OTHER_KINDS)) for _ in labels]
    numpy_columns = [(label, kind) for label, kind in zip(labels, kinds, strict=True) if kind in NUMPY_KINDS]
    base = draw(
        hpd.data_frames(
            columns=[hpd.column(label, dtype=kind) for label, kind in numpy_columns], index=st.just(index)
        )
    )
    data = {
        label: base[label].array if kind in NUMPY_KINDS else _column(draw, kind, len(index))
        for label, kind in zip(labels, kinds, strict=True)
    }
    frame = pd.DataFrame(data, index=index) if labels else pd.DataFrame(index=index)
    if not labels and draw(st.booleans()):
        frame = pd.DataFrame()  # no columns, no index: the plainest empty frame
    elif int_labels and labels and draw(st.booleans()):
        frame.columns = pd.RangeIndex(len(labels))  # pd.DataFrame(array): labels 0, 1, ...
    frame.attrs = draw(st.dictionaries(texts, st.integers() | texts | st.lists(st.integers(), max_size=3), max_size=3))
    if draw(st.booleans()):
        frame.columns.name = draw(texts)
    return frame


def assert_exactly_equal(back: Any, value: Any) -> None:
    """Equal values, dtypes, index (kind, names, freq), labels (kind), attrs; None stays None."""
    if isinstance(value, pd.Series):
        pd.testing.assert_series_equal(back, value, check_exact=True, check_index_type=True, check_freq=True)
    else:
        pd.testing.assert_frame_equal(
            back, value, check_exact=True, check_column_type=True, check_index_type=True, check_freq=True
        )
        assert list(back.dtypes) == list(value.dtypes)
        assert type(back.columns) is type(value.columns)
        assert back.columns.name == value.columns.name
    assert type(back) is type(value)
    assert back.attrs == value.attrs
    assert list(back.index.names) == list(value.index.names)
    assert type(back.index) is type(value.index)
    for i, dtype in enumerate([value.dtype] if isinstance(value, pd.Series) else value.dtypes):
        if isinstance(dtype, np.dtype) and dtype.kind == "O":  # assert_frame_equal counts None and NaN as equal
            left = back if isinstance(value, pd.Series) else back.iloc[:, i]
            right = value if isinstance(value, pd.Series) else value.iloc[:, i]
            assert [type(v) for v in left] == [type(v) for v in right]


class Through:
    """Encode, commit to a DuckDB file store as the recorder does, load back."""

    def __init__(self, path: str) -> None:
        self.store = DuckDBStore(path)
        self.ids = itertools.count()

    def __call__(self, value: Any) -> tuple[Any, codecs.Encoded, str]:
        step = f"s{next(self.ids)}"
        encoded = codecs.encode(value, step=step)
        table = f"output_r_{step}" if encoded.table is not None else None
        output = {"name": step, "codec": encoded.codec, "hash": encoded.hash}
        if table:
            output["table"] = table
        if encoded.blob is None:
            output["value"] = encoded.inline
        self.store.submit([Event("r", 1, "step_finished", step)], [StoredValue("r", step, step, encoded, table)]).result(30)
        return self.store.load_value("r", step, step, output), encoded, table or ""


@pytest.fixture(scope="module")
def through(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Through]:
    t = Through(str(tmp_path_factory.mktemp("roundtrip") / "store.duckdb"))
    yield t
    t.store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=data_frames())
def test_frames_round_trip_exactly_through_a_duckdb_store(through: Through, frame: pd.DataFrame) -> None:
    back, encoded, table = through(frame)
    assert encoded.codec == "arrow:pandas", "an exact Arrow form exists for every frame drawn here"
    assert_exactly_equal(back, frame)
    if len(frame.columns):
        rows = through.store.query(f'SELECT count(*) AS n FROM "{table}"')  # noqa: S608  (test's own name)
        assert int(rows["n"][0]) == len(frame)


def _paris() -> pd.DataFrame:
    when = pd.date_range("2024-03-30", periods=3, freq="D", tz="Europe/Paris", name="when")
    return pd.DataFrame({"v": [1.5, 2.5, np.nan]}, index=when)


def _with_attrs() -> pd.DataFrame:
    frame = pd.DataFrame({"a": [1, 2]})
    frame.attrs = {"source": "sensors.csv", "version": 3}
    return frame


# each of the cases of issue 12 (failure #8), as plain examples
CASES: dict[str, Any] = {
    "named index": pd.DataFrame({"amount": [3, 4]}, index=pd.Index(["u1", "u2"], name="user_id")),
    "MultiIndex": pd.DataFrame(
        {"n": [1, 2, 3]}, index=pd.MultiIndex.from_tuples([(2024, "a"), (2024, "b"), (2025, "a")], names=["y", "k"])
    ),
    "int labels": pd.DataFrame([[1, 2], [3, 4]]),
    "categorical": pd.DataFrame({"c": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "mid", "hi"], ordered=True)}),
    "Europe/Paris": _paris(),
    "nullable": pd.DataFrame(
        {
            "i": pd.array([1, None, 2**62], dtype="Int64"),
            "b": pd.array([True, None, False], dtype="boolean"),
            "s": pd.array(["x", None, "z"], dtype="string"),
        }
    ),
    "attrs": _with_attrs(),
    "empty": pd.DataFrame({"a": pd.Series([], dtype="int64"), "b": pd.Series([], dtype="str")}),
    "no columns": pd.DataFrame(),
    "index without columns": pd.DataFrame(index=pd.Index([1, 2], name="k")),
    "object text with None": pd.DataFrame({"o": pd.Series(["a", None, "c"], dtype=object)}),
    "lists in cells": pd.DataFrame({"l": [[1, 2], [3]]}),
    "series": pd.Series([1.5, 2.5], index=pd.Index(["a", "b"], name="k"), name="price"),
    "unnamed series": pd.Series(pd.Categorical(["a", "b"])),
    "float16 (no SQL table in DuckDB)": pd.DataFrame({"h": np.array([1.5, 2.0], dtype=np.float16)}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_kind_of_table_comes_back_exactly_as_arrow(through: Through, name: str) -> None:
    value = CASES[name]
    back, encoded, _ = through(value)
    assert encoded.codec == "arrow:pandas"
    assert_exactly_equal(back, value)


@pytest.mark.parametrize(
    "value",
    [
        pd.DataFrame([[1, 2]], columns=["a", "a"]),  # duplicate labels
        pd.DataFrame({"o": pd.Series([1, "a", None, np.nan], dtype=object)}),  # mixed, None beside NaN
        pd.DataFrame([[1, 2]], columns=[("t", 1), "x"]),  # a tuple beside a string label
        pd.DataFrame({"a": [1]}).set_flags(allows_duplicate_labels=False),
    ],
)
def test_what_arrow_cannot_give_back_exactly_is_pickled_instead(through: Through, value: pd.DataFrame) -> None:
    back, encoded, _ = through(value)
    assert encoded.codec == "cloudpickle"
    assert_exactly_equal(back, value)
    assert back.flags.allows_duplicate_labels == value.flags.allows_duplicate_labels


def test_a_big_frame_is_checked_on_a_probe_and_still_exact(through: Through, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames, "FULL_CHECK_CELLS", 1000)
    n = 5000
    value = pd.DataFrame(
        {"x": np.arange(n), "c": pd.Categorical(np.arange(n) % 3), "t": pd.date_range("2024", periods=n, tz="Asia/Kolkata")},
        index=pd.date_range("2020", periods=n, freq="min", name="at"),
    )
    back, encoded, _ = through(value)
    assert encoded.codec == "arrow:pandas"
    assert_exactly_equal(back, value)


def test_a_pyarrow_table_keeps_its_types(through: Through) -> None:
    value = pa.table(
        {
            "t": pa.array([1, 2], pa.timestamp("ns", tz="Europe/Paris")),  # DuckDB keeps microseconds
            "s": pa.array(["a", "b"], pa.large_string()),
        }
    )
    back, encoded, _ = through(value)
    assert encoded.codec == "arrow"
    assert back.equals(value) and back.schema == value.schema


def test_a_named_index_survives_resume_in_another_process(db: str, tmp_path: Path) -> None:
    """Issue 12 #8: after resume the next step read the index as a column (KeyError)."""
    script = textwrap.dedent(
        f"""
        import sys
        import pandas as pd
        import flownb

        flow = flownb.Flow("index", db={db!r})

        @flow.step
        def users():
            frame = pd.DataFrame({{"amount": [3, 4]}}, index=pd.Index(["u1", "u2"], name="user_id"))
            frame.attrs["unit"] = "EUR"
            return frame

        @flow.step
        def report(users):
            if sys.argv[1] == "fail":
                raise RuntimeError("first time")
            return {{"u2": int(users.loc["u2", "amount"]), "unit": users.attrs["unit"], "index": users.index.name}}

        if sys.argv[1] == "fail":
            print(flow.run().wait(60).id)
        else:
            run = flow.resume(sys.argv[2]).wait(60)
            assert run.status == "succeeded", run.error
            print(run.outputs["report"])
        """
    )
    path = tmp_path / "flow.py"
    path.write_text(script)
    first = subprocess.run([sys.executable, str(path), "fail"], capture_output=True, text=True, timeout=120, check=True)
    run_id = first.stdout.split()[-1]
    again = subprocess.run(
        [sys.executable, str(path), "resume", run_id], capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "{'u2': 4, 'unit': 'EUR', 'index': 'user_id'}" in again.stdout
    codec = flownb.sql("SELECT codec FROM outputs WHERE run_id = ? AND step = 'users'", db=db, params=[run_id])
    assert list(codec["codec"]) == ["arrow:pandas"]


def test_an_empty_frame_output_is_recorded_and_the_run_succeeds(db: str) -> None:
    flow = flownb.Flow("empty", db=db)
    flow.step(lambda: pd.DataFrame(), name="nothing")
    flow.step(lambda: pd.DataFrame({"a": pd.Series([], dtype="int64")}), name="no_rows")
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    out = flownb.sql("SELECT step, codec, table_name FROM outputs WHERE run_id = ? ORDER BY step", db=db, params=[run.id])
    assert list(out["codec"]) == ["arrow:pandas", "arrow:pandas"]
    tables = out.set_index("step")["table_name"]
    assert pd.isna(tables["nothing"])  # DuckDB has no table without columns; the value is kept all the same
    assert flownb.sql(f'SELECT count(*) AS n FROM "{tables["no_rows"]}"', db=db)["n"][0] == 0  # noqa: S608
    pd.testing.assert_frame_equal(run.outputs["nothing"], pd.DataFrame())


def test_timestamps_keep_their_zone_in_sql_too(through: Through) -> None:
    _, _, table = through(_paris().reset_index())
    got = through.store.query(f'SELECT "when" FROM "{table}" ORDER BY 1 LIMIT 1')  # noqa: S608
    assert got["when"][0] == pd.Timestamp(datetime(2024, 3, 29, 23, 0, tzinfo=UTC))
