"""Value codecs: each value by the cheapest exact codec, volatile when none can store it."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import textwrap
import threading
import xml.etree.ElementTree as ET  # noqa: N817  (the usual alias is the point of the test)
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

import flownb
from flownb.store import codecs
from flownb.store.base import Event, StoredValue
from flownb.store.duckdb_store import DuckDBStore


class Opaque:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.x == self.x

    def __hash__(self) -> int:
        return self.x


def _round_trip(encoded: codecs.Encoded) -> Any:
    return codecs.decode(encoded.codec, inline=encoded.inline, blob=encoded.blob, table=encoded.table)


@pytest.mark.parametrize(
    ("value", "codec"),
    [
        ({"a": [1, 2.5, None, True, "x"]}, "json"),
        ((1, 2), "cloudpickle"),  # JSON would turn the tuple into a list
        (float("nan"), "cloudpickle"),
        ({1: "int key"}, "cloudpickle"),
        (2**70, "cloudpickle"),  # past 64 bits: orjson refuses it
        (Opaque(3), "cloudpickle"),
        (pa.table({"x": [1, 2]}), "arrow"),
        (ET, "module"),
    ],
)
def test_codecs_round_trip_exactly(value: object, codec: str) -> None:
    encoded = codecs.encode(value)
    assert encoded.codec == codec
    back = _round_trip(encoded)
    if isinstance(value, float):
        assert back != back  # NaN
    elif codec == "module":
        assert back is value and encoded.inline == "xml.etree.ElementTree"
    else:
        assert back == value and type(back) is type(value)


def test_records_of_the_plain_pickle_codec_still_decode() -> None:
    blob = pickle.dumps((1, {"a": 2}))
    assert codecs.decode("pickle", blob=blob) == (1, {"a": 2})


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_generator, "TypeError: cannot pickle 'generator' object"),
        (threading.Lock, "cannot pickle '_thread.lock' object"),
        (lambda: sqlite3.connect(":memory:"), "cannot pickle 'sqlite3.Connection' object"),
        (lambda: duckdb.connect(":memory:"), "cannot pickle"),
        (lambda: open(__file__), "cannot pickle an open file"),  # noqa: SIM115  (closed below)
    ],
)
def test_what_no_codec_can_store_is_volatile_with_its_reason(make: Any, reason: str) -> None:
    value = make()
    try:
        first, second = codecs.encode(value), codecs.encode(value)
    finally:
        if hasattr(value, "close"):
            value.close()
    assert first.codec == "volatile" and reason in (first.reason or "")
    assert first.blob is None and first.inline is None and first.table is None
    assert first.hash != second.hash  # never matches a cache lookup, not even itself
    with pytest.raises(flownb.FlownbError, match="not stored"):
        codecs.decode("volatile")


CELL = '''
def inverse(x):
    return 1 / x

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm(self):
        return helper(self.x) + helper(self.y)

def helper(v):
    return [0, 1, 4][v]

square = lambda x: x ** 2
'''


def _cell_namespace() -> dict[str, Any]:
    """Names as a notebook cell step defines them: in ``__main__``, from ``<step cell>``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(CELL, "<step cell>", "exec"), namespace)  # noqa: S102  (test code)
    return namespace


def test_functions_classes_and_lambdas_of_cells_load_in_another_process(tmp_path: Path) -> None:
    ns = _cell_namespace()
    value = {"inverse": ns["inverse"], "point": ns["Point"](1, 2), "square": ns["square"], "Point": ns["Point"]}
    encoded = codecs.encode(value)
    assert encoded.codec == "cloudpickle"
    blob = tmp_path / "value.bin"
    blob.write_bytes(encoded.blob or b"")
    # a fresh interpreter knows nothing of the cell: everything must travel by value
    script = textwrap.dedent(
        f"""
        import traceback
        from flownb.store import codecs
        v = codecs.decode("cloudpickle", blob=open({str(blob)!r}, "rb").read())
        assert v["square"](4) == 16
        assert v["point"].norm() == 5 and isinstance(v["point"], v["Point"])
        assert v["Point"](2, 2).norm() == 8
        try:
            v["point"].x = 3
            v["point"].norm()
        except IndexError:
            print("".join(traceback.format_exc()))
        try:
            v["inverse"](0)
        except ZeroDivisionError:
            print("".join(traceback.format_exc()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    # tracebacks through restored code still point at the cell's lines
    assert 'File "<step cell>", line 9, in norm' in done.stdout
    assert 'File "<step cell>", line 12, in helper' in done.stdout
    assert 'File "<step cell>", line 3, in inverse' in done.stdout
    assert "<dynamic-code>" not in done.stdout


def test_a_module_is_stored_by_its_import_name() -> None:
    import matplotlib.pyplot as plt

    encoded = codecs.encode(plt)
    assert (encoded.codec, encoded.inline) == ("module", "matplotlib.pyplot")
    assert _round_trip(encoded) is plt


def test_a_module_no_import_gives_back_is_not_stored_by_name() -> None:
    import types

    dynamic = types.ModuleType("made_up_here")
    dynamic.answer = 42  # type: ignore[attr-defined]
    encoded = codecs.encode(dynamic)
    assert encoded.codec != "module"


def test_a_pickled_value_then_a_table_load_from_one_store(tmp_path: Path) -> None:
    """Failure #9: loading a pickled output left a fetch open; the next load of a
    DataFrame failed with "connection has an unfinished result from execute()"."""
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        pickled = codecs.encode((1, 2))
        frame = pd.DataFrame({"a": [1, 2]})
        table = codecs.encode(frame)
        # a table written before tables were also kept as Arrow streams: read from DuckDB
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
