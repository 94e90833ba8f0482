"""An in-memory store behind the same interface as DuckDB's.

Writes commit at once (the returned future is already done), so engine tests
need no file. The named operations work on Python objects; only users' SQL
(``query``) builds the same tables and views in an in-memory DuckDB from the
recorded events. Its runs' owner is always this process: a lease is held from a
run's ``run_started`` to its ``run_ended``, and :meth:`claim_run` (a resume) takes
it with a new epoch, as in the file store.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flownb.errors import FlownbError
from flownb.store import batches, codecs, failures, lease, schema
from flownb.store.base import Decision, Event, Store, StoredValue

if TYPE_CHECKING:
    import pandas as pd


class MemoryStore(Store):
    def __init__(self) -> None:
        self.path = ":memory:"
        self.lease_listeners = []
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._values: dict[tuple[str, str, str], StoredValue] = {}
        self._inbox: list[Decision] = []
        self._leases: dict[str, lease.Lease] = {}
        self._done: Future[None] = Future()
        self._done.set_result(None)

    def submit(
        self, events: list[Event], values: list[StoredValue] | None = None, *, urgent: bool = True
    ) -> Future[None]:
        started, ended = batches.lease_changes(events)
        with self._lock:
            for v in values or []:
                self._values[(v.run_id, v.step, v.name)] = v
            self._events.extend(events)
            for run in started:
                self._leases[run] = self._lease(run, 1, lease.HELD)
            for run in ended:
                held = self._leases.get(run)
                if held is not None:
                    self._leases[run] = self._lease(run, held.epoch, lease.RELEASED)
        return self._done

    def flush(self, timeout: float | None = None) -> None:
        return None

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        import duckdb

        with self._lock:
            events = list(self._events)
            inbox = list(self._inbox)
            leases = list(self._leases.values())
            tables = [v for v in self._values.values() if v.table_name and v.encoded.table is not None]
        con = duckdb.connect(":memory:")
        try:
            con.execute(schema.TABLES)
            batches.insert_events(con, events)
            if inbox:
                con.executemany(
                    "INSERT INTO _inbox VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [[d.run_id, d.step, d.ts, d.decision, d.decided_by, d.comment, d.via] for d in inbox],
                )
            for h in leases:  # their owner is this process, alive: renewed as of now
                o = h.owner
                con.execute(
                    "INSERT INTO _leases VALUES (?, ?, ?, ?, ?, ?, ?, now(), ?, ?)",
                    [h.run_id, h.epoch, o.key, o.pid, o.host, o.node, o.started, h.ttl, h.state],
                )
            for v in tables:
                arrow_value = v.encoded.table  # noqa: F841  (read by name in the SQL)
                # a type DuckDB does not know: no SQL table, as in the file store
                with contextlib.suppress(duckdb.Error):
                    con.execute(f'CREATE TABLE "{v.table_name}" AS SELECT * FROM arrow_value')  # noqa: S608
            con.execute(schema.VIEWS)
            try:
                return batches.frame(con, sql, params)
            except duckdb.Error as exc:
                raise failures.explain(exc, self.path) from None
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
        return None  # the owner of every run here is this process: alive while the store is

    def claim_run(self, run_id: str) -> int:
        """A new epoch for this process: the engine has checked that the run is not active here,
        and no other process sees this store."""
        with self._lock:
            held = self._leases.get(run_id)
            epoch = (held.epoch if held else 0) + 1
            self._leases[run_id] = self._lease(run_id, epoch, lease.HELD)
            return epoch

    def release_run(self, run_id: str) -> None:
        with self._lock:
            held = self._leases.get(run_id)
            if held is not None:
                self._leases[run_id] = self._lease(run_id, held.epoch, lease.RELEASED)

    def run_owner(self, run_id: str) -> lease.Lease | None:
        with self._lock:
            return self._leases.get(run_id)

    def close(self) -> None:
        return None

    def _lease(self, run_id: str, epoch: int, state: str) -> lease.Lease:
        return lease.Lease(run_id, epoch, lease.me(), time.time(), lease.DEFAULT_TTL, state)

