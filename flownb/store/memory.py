"""An in-memory store behind the same interface as DuckDB's.

Writes commit at once (the returned future is already done), so engine tests
need no file; SQL still works: ``query`` builds the same views over an
in-memory DuckDB from the recorded events.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flownb.errors import FlownbError
from flownb.store import codecs, schema
from flownb.store.base import Decision, Event, Store, StoredValue, utcnow

if TYPE_CHECKING:
    import pandas as pd


class MemoryStore(Store):
    def __init__(self) -> None:
        self.path = ":memory:"
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._values: dict[tuple[str, str, str], StoredValue] = {}
        self._inbox: list[Decision] = []
        self._beats: dict[str, Any] = {}
        self._done: Future[None] = Future()
        self._done.set_result(None)

    def submit(
        self, events: list[Event], values: list[StoredValue] | None = None, *, urgent: bool = True
    ) -> Future[None]:
        with self._lock:
            for v in values or []:
                self._values[(v.run_id, v.step, v.name)] = v
            self._events.extend(events)
        return self._done

    def flush(self, timeout: float | None = None) -> None:
        return None

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        import duckdb

        from flownb.store.duckdb_store import _events_table, _frame

        with self._lock:
            events = list(self._events)
            inbox = list(self._inbox)
            beats = dict(self._beats)
            tables = [v for v in self._values.values() if v.table_name and v.encoded.table is not None]
        con = duckdb.connect(":memory:")
        try:
            con.execute(schema.TABLES)
            batch = _events_table(events)  # noqa: F841  (read by name in SQL)
            con.execute("INSERT INTO events SELECT * FROM batch")
            con.executemany(
                "INSERT INTO _inbox VALUES (?, ?, ?, ?, ?, ?, ?)",
                [[d.run_id, d.step, d.ts, d.decision, d.decided_by, d.comment, d.via] for d in inbox],
            ) if inbox else None
            for run_id, ts in beats.items():
                con.execute("INSERT INTO _heartbeats VALUES (?, ?)", [run_id, ts])
            for v in tables:
                arrow_value = v.encoded.table  # noqa: F841  (read by name in the SQL)
                # a type DuckDB does not know: no SQL table, as in the file store
                with contextlib.suppress(duckdb.Error):
                    con.execute(f'CREATE TABLE "{v.table_name}" AS SELECT * FROM arrow_value')  # noqa: S608
            con.execute(schema.VIEWS)
            try:
                return _frame(con, sql, params)
            except duckdb.Error as exc:
                raise FlownbError(f"store :memory:: {exc}") from None
        finally:
            con.close()

    def run_events(self, run_id: str) -> list[Event]:
        with self._lock:
            return sorted((e for e in self._events if e.run_id == run_id), key=lambda e: e.seq)

    def load_value(self, run_id: str, step: str, name: str, output: dict[str, Any]) -> Any:
        if "value" in output or output["codec"] in ("module", codecs.VOLATILE):
            return codecs.decode(output["codec"], inline=output.get("value"))
        stored = self._values.get((run_id, step, name))
        if stored is None:
            raise FlownbError(f"the stored value of {step}.{name} in run {run_id} is missing")
        e = stored.encoded
        return codecs.decode(e.codec, blob=e.blob, table=e.table)

    def post_decision(self, decision: Decision) -> None:
        with self._lock:
            self._inbox.append(decision)

    def decisions(self, run_id: str) -> list[Decision]:
        with self._lock:
            return [d for d in self._inbox if d.run_id == run_id]

    def heartbeat(self, run_ids: list[str]) -> None:
        now = utcnow()
        with self._lock:
            for r in run_ids:
                self._beats[r] = now

    def close(self) -> None:
        return None
