"""The DuckDB store: one writer thread per process, group commit, idle release.

DuckDB lets one process at a time open a file for writing. The writer thread
opens the file when there is work, commits everything queued in one
transaction (group commit), and closes it after ``idle_release`` seconds
without work so that another process (the CLI, a second notebook) can take
its turn. A process that finds the file locked retries with backoff for
``lock_timeout`` seconds, then raises :class:`~flownb.errors.StoreLocked`
naming the holder's PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import orjson

from flownb.errors import FlownbError, StoreLocked
from flownb.store import codecs, schema
from flownb.store.base import Decision, Event, Store, StoredValue

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

T = TypeVar("T")
_LOCK_PID = re.compile(r"\(PID (\d+)\)")
#: codecs whose records never have a row in ``_values``
_NOT_IN_VALUES = ("module", codecs.VOLATILE)
GATHER_SECONDS = 0.02
GATHER_EVENTS = 5000
_STOP = object()


class _Write:
    __slots__ = ("events", "future", "urgent", "values")

    def __init__(self, events: list[Event], values: list[StoredValue], future: Future[None], urgent: bool) -> None:
        self.events = events
        self.values = values
        self.future = future
        self.urgent = urgent


class _Call:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[duckdb.DuckDBPyConnection], Any], future: Future[Any]) -> None:
        self.fn = fn
        self.future = future


class DuckDBStore(Store):
    def __init__(self, path: str, *, lock_timeout: float | None = None, idle_release: float = 0.5) -> None:
        self.path = path
        self.lock_timeout = (
            lock_timeout if lock_timeout is not None else float(os.environ.get("FLOWNB_LOCK_TIMEOUT", "30"))
        )
        self.idle_release = idle_release
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: held while the connection is in use: by the writer from taking work until it is
        #: done with it, or by a thread committing at once (``commit_now``)
        self._io = threading.Lock()
        self._last_use = time.monotonic()
        #: set when an op someone waits for is queued: it ends a gathering pause
        self._wake = threading.Event()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._serve, name=f"flownb-store:{Path(path).name}", daemon=True)
        self._thread.start()
        # create the schema and mark runs of dead local processes interrupted, now,
        # so that a lock or a bad file is reported where the store is opened
        self._call(_prepare)

    # -- the interface ------------------------------------------------------

    def submit(
        self, events: list[Event], values: list[StoredValue] | None = None, *, urgent: bool = True
    ) -> Future[None]:
        future: Future[None] = Future()
        self._queue.put(_Write(events, values or [], future, urgent))
        if urgent:
            self._wake.set()
        return future

    def commit_now(self, events: list[Event], values: list[StoredValue]) -> Future[None] | None:
        """Commit on the calling thread when the writer is idle with the file open and
        nothing queued (so nothing submitted earlier is overtaken); else ``None``."""
        if self._con is None or not self._queue.empty() or not self._io.acquire(blocking=False):
            return None
        try:
            con = self._con
            if con is None or not self._queue.empty():
                return None
            write = _Write(events, values, Future(), urgent=True)
            self._commit(con, [write])
            self._last_use = time.monotonic()
            return write.future
        finally:
            self._io.release()

    def flush(self, timeout: float | None = None) -> None:
        self._call(lambda con: None, timeout=timeout)

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        def run(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
            return _frame(con, sql, params)

        return self._call(run)

    def run_events(self, run_id: str) -> list[Event]:
        rows = self._call(
            lambda con: con.execute(
                "SELECT run_id, seq, epoch_us(ts), step, event, payload FROM events WHERE run_id = ? ORDER BY seq",
                [run_id],
            ).fetchall()
        )
        return [
            Event(run_id=r[0], seq=r[1], at=r[2] / 1_000_000, step=r[3], event=r[4], payload=json.loads(r[5] or "{}"))
            for r in rows
        ]

    def load_value(self, run_id: str, step: str, name: str, output: dict[str, Any]) -> Any:
        codec = output["codec"]
        if "value" in output or codec in _NOT_IN_VALUES:
            return codecs.decode(codec, inline=output.get("value"))
        # fetchall, never fetchone: a result left open blocks the connection's next query
        rows = self._call(
            lambda con: con.execute(
                "SELECT data FROM _values WHERE run_id = ? AND step = ? AND name = ? AND hash = ?",
                [run_id, step, name, output["hash"]],
            ).fetchall()
        )
        if rows:
            return codecs.decode(codec, blob=rows[0][0])
        table_name = output.get("table")
        if table_name:  # written before tables were also kept as Arrow streams
            arrow = self._call(lambda con: con.sql(f'SELECT * FROM "{table_name}"').to_arrow_table())  # noqa: S608
            return codecs.decode(codec, table=_read_all(arrow))
        raise FlownbError(f"the stored value of {step}.{name} in run {run_id} is missing")

    def post_decision(self, decision: Decision) -> None:
        d = decision
        self._call(
            lambda con: con.execute(
                "INSERT INTO _inbox VALUES (?, ?, ?, ?, ?, ?, ?)",
                [d.run_id, d.step, d.ts, d.decision, d.decided_by, d.comment, d.via],
            )
        )

    def decisions(self, run_id: str) -> list[Decision]:
        rows = self._call(
            lambda con: con.execute(
                "SELECT run_id, step, decision, decided_by, comment, via, epoch_us(ts) FROM _inbox "
                "WHERE run_id = ? ORDER BY ts",
                [run_id],
            ).fetchall()
        )
        return [Decision(r[0], r[1], r[2], r[3], r[4], r[5], _utc(r[6])) for r in rows]

    def heartbeat(self, run_ids: list[str]) -> None:
        if not run_ids:
            return
        self._call(
            lambda con: con.executemany(
                "INSERT OR REPLACE INTO _heartbeats VALUES (?, now())", [[r] for r in run_ids]
            )
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(timeout=30)

    # -- the writer thread ----------------------------------------------------

    def _call(self, fn: Callable[[duckdb.DuckDBPyConnection], T], timeout: float | None = None) -> T:
        if self._closed:
            raise FlownbError(f"the store {self.path} is closed")
        future: Future[T] = Future()
        self._queue.put(_Call(fn, future))
        self._wake.set()
        return future.result(timeout)

    def _serve(self) -> None:
        while True:
            idle_for = None if self._con is None else self._last_use + self.idle_release - time.monotonic()
            try:
                first = self._queue.get(timeout=max(idle_for, 0.0) if idle_for is not None else None)
            except queue.Empty:
                with self._io:  # unless someone committed at once meanwhile
                    if time.monotonic() - self._last_use >= self.idle_release:
                        self._release()
                continue
            with self._io:
                batch = self._gather(first)
                stop = any(op is _STOP for op in batch)
                self._handle([op for op in batch if op is not _STOP])
                self._last_use = time.monotonic()
                if stop:
                    self._release()
                    return

    def _gather(self, first: Any) -> list[Any]:
        """Everything queued; and when nobody waits for it, what comes in the next
        ``GATHER_SECONDS`` too (one commit costs about as much as a thousand rows).

        While gathering, the thread sleeps until the deadline or an urgent op, not
        until the next write: a wide wave submits often, and waking for each would
        take the GIL from the engine as often.
        """
        self._wake.clear()
        batch = [first]
        deadline = time.monotonic() + GATHER_SECONDS
        while True:
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            relaxed = all(isinstance(op, _Write) and not op.urgent for op in batch)
            left = deadline - time.monotonic()
            if not relaxed or left <= 0 or sum(len(op.events) for op in batch) >= GATHER_EVENTS:
                return batch
            self._wake.wait(left)

    def _handle(self, batch: list[Any]) -> None:
        try:
            con = self._connect()
        except BaseException as exc:  # noqa: BLE001  (every waiter must hear of it)
            for op in batch:
                op.future.set_exception(exc)
            return
        writes: list[_Write] = []
        for op in batch:
            if isinstance(op, _Write):
                writes.append(op)
                continue
            self._commit(con, writes)
            writes = []
            try:
                op.future.set_result(op.fn(con))
            except BaseException as exc:  # noqa: BLE001
                op.future.set_exception(_explain(exc, self.path))
            finally:
                # a result an op left unread would make every later query on this
                # connection fail ("unfinished result from execute()")
                with contextlib.suppress(duckdb.Error):
                    con.abort()
        self._commit(con, writes)

    def _commit(self, con: duckdb.DuckDBPyConnection, writes: list[_Write]) -> None:
        if not writes:
            return
        try:
            _write(con, writes)
        except Exception:  # noqa: BLE001  (find the bad write; commit the others)
            if len(writes) == 1:
                import sys

                writes[0].future.set_exception(_explain(sys.exc_info()[1], self.path))  # type: ignore[arg-type]
                return
            for w in writes:
                self._commit(con, [w])
            return
        for w in writes:
            w.future.set_result(None)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._con is not None:
            return self._con
        started = time.monotonic()
        delay = 0.02
        while True:
            try:
                self._con = duckdb.connect(self.path)
                return self._con
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" not in text.lower():
                    raise FlownbError(f"cannot open the store {self.path}: {text}") from None
                waited = time.monotonic() - started
                if waited >= self.lock_timeout:
                    match = _LOCK_PID.search(text)
                    raise StoreLocked(self.path, int(match.group(1)) if match else None, waited) from None
                time.sleep(min(delay, max(0.0, self.lock_timeout - waited)))
                delay = min(delay * 1.5, 0.5)

    def _release(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            con.close()


def _write(con: duckdb.DuckDBPyConnection, writes: list[_Write]) -> None:
    """Commit a group of writes in one transaction: one table in the common case.

    A table output is kept twice: its exact Arrow stream in ``_values`` (what
    resume loads) and a DuckDB table of the same name for users' SQL. A table
    DuckDB cannot make (a type it does not know) is left out and the rest is
    committed again without it: the value itself is safe in ``_values``.
    """
    events = [e for w in writes for e in w.events]
    values = [v for w in writes for v in w.values]
    if not values:
        _insert_events(con, events)
        return
    without_sql: set[int] = set()
    while True:
        con.execute("BEGIN TRANSACTION")
        try:
            failed = _write_values(con, values, without_sql)
            if failed is None:
                _insert_events(con, events)
                con.execute("COMMIT")
                return
        except BaseException:
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


_SMALL_BATCH = 16
_ROW = "(?, ?, make_timestamptz(?), ?, ?, ?)"


def _insert_events(con: duckdb.DuckDBPyConnection, events: list[Event]) -> None:
    """One statement: bound values for a few rows (a chain's commit), Arrow for many."""
    if not events:
        return
    if len(events) <= _SMALL_BATCH:
        args: list[Any] = []
        for e, payload in zip(events, _payloads(events), strict=True):
            args += [e.run_id, e.seq, int(e.at * 1_000_000), e.step, e.event, payload]
        # only placeholders are joined into the statement; every value is bound
        con.execute("INSERT INTO events VALUES " + ", ".join([_ROW] * len(events)), args)  # noqa: S608
        return
    batch = _events_table(events)  # noqa: F841  (read by name in the SQL below)
    con.execute("INSERT INTO events SELECT * FROM batch")


def _events_table(events: list[Event]) -> pa.Table:
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
            "payload": pa.array(_payloads(events), pa.string()),
        }
    )


def _payloads(events: list[Event]) -> list[str]:
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


def _utc(micros: int) -> datetime:
    # fetching TIMESTAMPTZ as Python objects would need pytz; epoch micros need nothing
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: Any) -> pd.DataFrame:
    """A query's answer as a DataFrame, by way of Arrow.

    (DuckDB's own ``.df()`` uses a pandas call that pandas 3 deprecates.)
    """
    relation = con.sql(sql, params=params)
    if relation is None:  # a statement that returns nothing
        import pandas as pd

        return pd.DataFrame()
    frame: pd.DataFrame = relation.to_arrow_table().to_pandas()
    return frame


def _read_all(result: Any) -> Any:
    return result.read_all() if hasattr(result, "read_all") else result


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(schema.TABLES)
    con.execute(schema.VIEWS)
    mark_dead_runs_interrupted(con)


def mark_dead_runs_interrupted(con: duckdb.DuckDBPyConnection) -> None:
    """Runs of this host whose process is gone are interrupted (resumable)."""
    rows = con.execute(
        "SELECT run_id, pid FROM runs WHERE status IN ('running', 'waiting', 'pending') AND host = ?",
        [socket.gethostname()],
    ).fetchall()
    dead = [run_id for run_id, pid in rows if pid != os.getpid() and not _alive(pid)]
    if dead:
        con.execute(
            "INSERT INTO events SELECT run_id, max(seq) + 1, now(), NULL, 'run_status', "
            "'{\"status\":\"interrupted\",\"reason\":\"its process is gone\"}' "
            "FROM events WHERE run_id IN (SELECT unnest(?)) GROUP BY run_id",
            [dead],
        )


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed but not yet reaped by its parent) is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _explain(exc: BaseException, path: str) -> BaseException:
    if isinstance(exc, duckdb.Error) and not isinstance(exc, FlownbError):
        return FlownbError(f"store {path}: {exc}")
    return exc
