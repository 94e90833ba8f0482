"""Value codecs and the loading of stored values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

import flownb
from flownb.store import codecs
from flownb.store.base import Event, StoredValue
from flownb.store.duckdb_store import DuckDBStore


def test_a_pickled_value_then_a_table_load_from_one_store(tmp_path: Path) -> None:
    """Failure #9: loading a pickled output left a fetch open; the next load of a
    DataFrame failed with "connection has an unfinished result from execute()"."""
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        pickled = codecs.encode((1, 2))
        frame = pd.DataFrame({"a": [1, 2]})
        table = codecs.encode(frame)
        legacy = codecs.Encoded("arrow:pandas", 1, "legacyhash", table=pa.Table.from_pandas(frame))
        store.submit(
            [Event("r1", 1, "run_started")],
            [
                StoredValue("r1", "p", "p", pickled),
                StoredValue("r1", "t", "t", table, "output_r1_t"),
                StoredValue("r1", "old", "old", legacy, "output_r1_old"),
            ],
        ).result(30)
        assert store.load_value("r1", "p", "p", {"codec": pickled.codec, "hash": pickled.hash}) == (1, 2)
        out = {"codec": table.codec, "hash": table.hash, "table": "output_r1_t"}
        pd.testing.assert_frame_equal(store.load_value("r1", "t", "t", out), frame)
        assert store.load_value("r1", "p", "p", {"codec": pickled.codec, "hash": pickled.hash}) == (1, 2)
        old = {"codec": "arrow:pandas", "hash": "legacyhash", "table": "output_r1_old"}
        pd.testing.assert_frame_equal(store.load_value("r1", "old", "old", old), frame)
    finally:
        store.close()


def test_resume_restores_a_pickled_output_and_then_a_frame(db: str) -> None:
    """The same through a run and ``resume``, the way the CLI does it."""

    def make(fail: bool) -> flownb.Flow:
        flow = flownb.Flow("nine", db=db)
        # restored in name order: the pickled value first, then the frame
        flow.step(lambda: (1, 2), name="a_pair")
        flow.step(lambda a_pair: pd.DataFrame({"a": list(a_pair)}), name="b_frame")

        @flow.step
        def total(a_pair: tuple[int, int], b_frame: pd.DataFrame) -> int:
            if fail:
                raise RuntimeError("not yet")
            return int(b_frame["a"].sum()) + sum(a_pair)

        return flow

    first = make(fail=True).run().wait(60)
    assert first.status == "failed"
    again = make(fail=False).resume(first.id).wait(60)
    assert again.status == "succeeded", again.error
    assert again.outputs["total"] == 6
