"""An in-memory store behind the same interface as DuckDB's.

Writes commit at once (the returned future is already done), so engine tests
need no file. The named operations (store/operations.py) are answered from the
events in Python (store/twin.py), without DuckDB; only users' SQL (``query``)
builds the same tables and views in an in-memory DuckDB from the recorded events.
Its runs' owner is always this process: a lease is held from a run's
``run_started`` to its ``run_ended``, and :meth:`claim_run` (a resume) takes it
with a new epoch, as in the file store.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flownb.errors import FlownbError
from flownb.store import batches, codecs, failures, lease, schema, twin
from flownb.store.base import Decision, Event, Store, StoredValue
from flownb.store.operations import HISTORY_COLUMNS, RUNS_FRAME_COLUMNS

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

    # -- the named operations, from the events ---------------------------------------------------

    def run_ids_like(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted({e.run_id for e in self._events if e.run_id.startswith(prefix)})

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        df = self._runs(run_id=run_id)
        return None if df.empty else dict(df.iloc[0])

    def runs_frame(self, run_id: str) -> pd.DataFrame:
        return self._runs(run_id=run_id)[list(RUNS_FRAME_COLUMNS)]

    def history(self, limit: int = 50) -> pd.DataFrame:
        rows = sorted(twin.run_rows(self._snapshot()), key=lambda r: r["started_at"], reverse=True)
        return twin.frame(rows[: max(int(limit), 0)], twin.RUN_COLUMNS)[list(HISTORY_COLUMNS)]

    def latest_run(self, flow: str) -> tuple[str, str] | None:
        rows = [r for r in twin.run_rows(self._snapshot()) if r["flow"] == flow and r["parent_run_id"] is None]
        if not rows:
            return None
        latest = max(rows, key=lambda r: r["started_at"])
        return str(latest["run_id"]), str(latest["status"])

    def steps_frame(self, run_id: str) -> pd.DataFrame:
        rows = twin.step_rows(e for e in self._snapshot().events if e.run_id == run_id)
        rows.sort(key=lambda r: (r["started_at"], r["step"], r["attempt"] or 0))
        return twin.frame(rows, twin.STEP_COLUMNS)

    def approval_state(self, run_id: str, step: str) -> tuple[bool, str | None]:
        gates = twin.approvals(self._snapshot(), run_id)
        return (step in gates), gates.get(step)

    def waiting_approvals(self, run_id: str) -> list[str]:
        return [step for step, decision in twin.approvals(self._snapshot(), run_id).items() if decision is None]

    def cached_success(self, flow: str, step: str, input_hash: str, other_than: str) -> tuple[str, str] | None:
        snap = self._snapshot()
        of_flow = {r["run_id"] for r in twin.run_rows(snap) if r["flow"] == flow}
        found = [
            r for r in twin.step_rows(e for e in snap.events if e.run_id in of_flow and e.step == step)
            if r["input_hash"] == input_hash and r["status"] in ("succeeded", "cached") and r["run_id"] != other_than
        ]  # fmt: skip
        if not found:
            return None
        latest = max(found, key=lambda r: r["ended_at"] or r["started_at"])
        return str(latest["run_id"]), str(latest["output_hash"])

    def _runs(self, run_id: str) -> pd.DataFrame:
        rows = [r for r in twin.run_rows(self._snapshot()) if r["run_id"] == run_id]
        return twin.frame(rows, twin.RUN_COLUMNS)

    def _snapshot(self) -> twin.Snapshot:
        with self._lock:
            return twin.Snapshot(list(self._events), list(self._inbox), dict(self._leases))

    # -- records ----------------------------------------------------------------------------------

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

