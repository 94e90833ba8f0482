"""How records become rows: one transaction per group commit, and answers as DataFrames.

Shared by the DuckDB store (its file) and the in-memory store (the DuckDB database
it builds to answer SQL).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import orjson

from flownb.store.base import Event, StoredValue

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_SMALL_BATCH = 16
_ROW = "(?, ?, make_timestamptz(?), ?, ?, ?)"
#: the events that take (``run_started``) and give back (``run_ended``) a run's lease
STARTED, ENDED = "run_started", "run_ended"


def lease_changes(events: Iterable[Event]) -> tuple[list[str], list[str]]:
    """The runs these events start, and those they end (an end: any ``run_ended``)."""
    started: list[str] = []
    ended: list[str] = []
    for e in events:
        name = e.event
        if name == STARTED:
            started.append(e.run_id)
        elif name == ENDED:
            ended.append(e.run_id)
    return started, ended


def write(con: duckdb.DuckDBPyConnection, events: list[Event], values: list[StoredValue], *,
          leases: Any = None) -> None:  # fmt: skip
    """Commit events and values in one transaction: one table in the common case.

    ``leases``, when given, is called with the connection inside the transaction:
    the lease of a run commits with its ``run_started`` (and is given back with its
    ``run_ended``), never apart from it.

    A table output is kept twice: its exact Arrow stream in ``_values`` (what
    resume loads) and a DuckDB table of the same name for users' SQL. A table
    DuckDB cannot make (a type it does not know) is left out and the rest is
    committed again without it: the value itself is safe in ``_values``.
    """
    if not values and leases is None:
        insert_events(con, events)
        return
    without_sql: set[int] = set()
    while True:
        con.execute("BEGIN TRANSACTION")
        try:
            failed = _write_values(con, values, without_sql)
            if failed is None:
                insert_events(con, events)
                if leases is not None:
                    leases(con)
                con.execute("COMMIT")
                return
        except BaseException:
            # a failed COMMIT has ended the transaction already: rolling back again would
            # replace the real error (a full disk) with "no transaction is active"
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        con.execute("ROLLBACK")
        without_sql.add(failed)


def _write_values(con: duckdb.DuckDBPyConnection, values: list[StoredValue], without_sql: set[int]) -> int | None:
    """Write the values; the index of a SQL table DuckDB refused, else ``None``."""
    rows = [
        [v.run_id, v.step, v.name, v.encoded.hash, v.encoded.codec, v.encoded.blob]
        for v in values if v.encoded.blob is not None
    ]  # fmt: skip
    if rows:
        con.executemany("INSERT INTO _values VALUES (?, ?, ?, ?, ?, ?)", rows)
    for i, v in enumerate(values):
        if v.table_name and v.encoded.table is not None and i not in without_sql:
            arrow_value = v.encoded.table  # noqa: F841  (read by name in the SQL)
            try:
                # the name is made by the recorder from a run id and a step name (identifiers)
                con.execute(f'CREATE OR REPLACE TABLE "{v.table_name}" AS SELECT * FROM arrow_value')  # noqa: S608
            except (duckdb.NotImplementedException, duckdb.InvalidInputException, duckdb.ConversionException,
                    duckdb.CatalogException, duckdb.BinderException, duckdb.ParserException):  # fmt: skip
                return i
    return None


def insert_events(con: duckdb.DuckDBPyConnection, events: list[Event]) -> None:
    """One statement: bound values for a few rows (a chain's commit), Arrow for many."""
    if not events:
        return
    if len(events) <= _SMALL_BATCH:
        args: list[Any] = []
        for e, payload in zip(events, payloads(events), strict=True):
            args += [e.run_id, e.seq, int(e.at * 1_000_000), e.step, e.event, payload]
        # only placeholders are joined into the statement; every value is bound
        con.execute("INSERT INTO events VALUES " + ", ".join([_ROW] * len(events)), args)  # noqa: S608
        return
    batch = events_table(events)  # noqa: F841  (read by name in the SQL below)
    con.execute("INSERT INTO events SELECT * FROM batch")


def events_table(events: list[Event]) -> pa.Table:
    """The Arrow batch of a group commit (about 2 us an event; datetimes go as ints)."""
    import pyarrow as pa

    micros = pa.array([int(e.at * 1_000_000) for e in events], pa.int64())
    return pa.table(
        {
            "run_id": pa.array([e.run_id for e in events], pa.string()),
            "seq": pa.array([e.seq for e in events], pa.int64()),
            "ts": micros.cast(pa.timestamp("us", tz="UTC")),
            "step": pa.array([e.step for e in events], pa.string()),
            "event": pa.array([e.event for e in events], pa.string()),
            "payload": pa.array(payloads(events), pa.string()),
        }
    )


def payloads(events: list[Event]) -> list[str]:
    """The events' payloads as JSON text; what JSON text cannot hold is escaped, never fatal.

    A step may print a lone surrogate (``'\\ud800'``), a metric may be an int past 64
    bits: orjson refuses both, and one refused payload would fail the whole commit.
    The common case pays for no check: only a batch that fails is written again, escaped.
    """
    dumps, opts = orjson.dumps, orjson.OPT_NON_STR_KEYS
    try:
        return [dumps(e.payload, default=str, option=opts).decode() for e in events]
    except orjson.JSONEncodeError:
        return [dumps(_escaped(e.payload), default=str, option=opts).decode() for e in events]


def _escaped(value: Any, depth: int = 0) -> Any:
    """``value`` with text made valid UTF-8 (``errors="backslashreplace"``), ints past 64
    bits and anything else JSON has no form for as (escaped) text, nesting cut at 200."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if depth < 200 and isinstance(value, dict):
        return {_escaped(k if isinstance(k, str) else str(k)): _escaped(v, depth + 1) for k, v in value.items()}
    if depth < 200 and isinstance(value, list | tuple):
        return [_escaped(v, depth + 1) for v in value]
    return _escaped(str(value) if depth < 200 else "...")


def utc(micros: int) -> datetime:
    # fetching TIMESTAMPTZ as Python objects would need pytz; epoch micros need nothing
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: Any) -> pd.DataFrame:
    """A query's answer as a DataFrame, by way of Arrow.

    (DuckDB's own ``.df()`` uses a pandas call that pandas 3 deprecates.)
    """
    relation = con.sql(sql, params=params)
    if relation is None:  # a statement that returns nothing
        import pandas as pd

        return pd.DataFrame()
    result: pd.DataFrame = relation.to_arrow_table().to_pandas()
    return result


def read_all(result: Any) -> Any:
    return result.read_all() if hasattr(result, "read_all") else result
