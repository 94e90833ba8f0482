"""The DuckDB store: one writer thread per process, group commit, turns with the file.

Guarantees kept here:

* **Group commit.** The writer thread commits everything queued in one
  transaction; the future ``submit`` returns is done once it is committed.
* **Turns** (turns.py). The file is open only during this process's turn. A
  process that only queries lets go of it right after each query; one that writes
  (runs flows) keeps it while it works and ``idle_release`` seconds after its last
  write (so back-to-back runs do not close and checkpoint the file between them),
  and lets go after a quantum when another process waits. A process that gets no
  turn within ``lock_timeout`` seconds raises :class:`~flownb.errors.StoreLocked`
  naming the holder and what it is doing.
* **One owner** (lease.py, owned.py). A run's lease is written with its ``run_started``
  record and given back with its ``run_ended``, in the same transaction. Each
  time this process takes its turn it reads the leases of the runs it owns (no
  other process can change them while it has the file): a run another process
  took over is lost, and its records are refused from then on, so a late record
  of an older epoch never lands.
* **Failures** (failures.py). Every DuckDB failure reaches the caller as one
  :class:`~flownb.errors.StoreError`. A run whose record failed to commit is never
  recorded as succeeded afterwards. A file that shrank while this process had it
  open (truncated by another program) is damaged: every later operation fails
  with that; damage DuckDB finds itself (a bad checksum) reads the same way.
* **Read-only files** are opened read-only: they can be read; a write fails at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from flownb.errors import FlownbError, StoreError
from flownb.store import batches, codecs, failures, lease, lease_table, schema
from flownb.store.base import Decision, Event, Store, StoredValue
from flownb.store.owned import OwnedRuns
from flownb.store.storefile import StoreFile

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
#: codecs whose records never have a row in ``_values``
_NOT_IN_VALUES = ("module", codecs.VOLATILE)
GATHER_SECONDS = 0.02
GATHER_EVENTS = 5000
#: how often a holder that works for live runs looks whether another process waits for the file
_WAITER_POLL = 0.05
#: how long a worker waits for the writer's idle look to end before handing it the commit
_IDLE_LOOK = 0.002
#: how long closing waits for a turn to give back the leases of runs still owned here
_CLOSE_WAIT = 5.0
_STOP = object()


class _Write:
    __slots__ = ("events", "future", "urgent", "values")

    def __init__(self, events: list[Event], values: list[StoredValue], future: Future[None], urgent: bool) -> None:
        self.events = events
        self.values = values
        self.future = future
        self.urgent = urgent

    def runs(self) -> set[str]:
        return {e.run_id for e in self.events} | {v.run_id for v in self.values}


class _Call:
    __slots__ = ("chore", "fn", "future", "write")

    def __init__(
        self, fn: Callable[[duckdb.DuckDBPyConnection], Any], future: Future[Any], write: bool, chore: bool
    ) -> None:
        self.fn = fn
        self.future = future
        self.write = write
        #: housekeeping (a lease renewal): it does not keep the file from being let go
        self.chore = chore


class _Flush:
    """Done once everything queued before it is: it needs no turn with the file of its own."""

    __slots__ = ("future",)

    def __init__(self, future: Future[None]) -> None:
        self.future = future


class DuckDBStore(Store):
    def __init__(
        self, path: str, *, lock_timeout: float | None = None, idle_release: float = 0.5,
        lease_ttl: float | None = None,
    ) -> None:  # fmt: skip
        self.path = path
        self.lock_timeout = (
            lock_timeout if lock_timeout is not None else float(os.environ.get("FLOWNB_LOCK_TIMEOUT", "30"))
        )
        self.idle_release = idle_release
        self.lease_ttl = lease_ttl if lease_ttl is not None else lease.ttl_from_environment()
        self.lease_listeners = []
        self._owner = lease.me()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: held while the connection is in use: by the writer from taking work until it is
        #: done with it, or by a thread committing at once (``commit_now``)
        self._io = threading.Lock()
        #: when this process last wrote (reads and chores do not count: see _keeps_the_file)
        self._last_use = -math.inf
        #: set when an op someone waits for is queued: it ends a gathering pause
        self._wake = threading.Event()
        self._closed = False
        self._prepared = False
        #: the runs this process owns here, lost, or failed to record (the writer thread's alone)
        self._runs = OwnedRuns(path, self._owner, self.lease_ttl, self.lease_listeners)
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None
        self._file = StoreFile(path, self.lock_timeout)
        self._thread = threading.Thread(target=self._serve, name=f"flownb-store:{Path(path).name}", daemon=True)
        self._thread.start()
        # create the schema and mark runs of dead local owners interrupted, now, so that
        # a lock or a bad file is reported where the store is opened
        try:
            self._call(lambda con: None, write=False)
        except BaseException:
            self.close()
            raise

    @property
    def turn_waits(self) -> list[float]:
        """Seconds each turn with the file was waited for (benchmarks/contention.py reads them)."""
        return self._file.waits

    # -- the interface ------------------------------------------------------

    def submit(
        self, events: list[Event], values: list[StoredValue] | None = None, *, urgent: bool = True
    ) -> Future[None]:
        future: Future[None] = Future()
        if self._file.read_only:
            future.set_exception(self._file.read_only_error())
            return future
        self._queue.put(_Write(events, values or [], future, urgent))
        if urgent:
            self._wake.set()
        return future

    def commit_now(self, events: list[Event], values: list[StoredValue]) -> Future[None] | None:
        """Commit on the calling thread when the writer is idle with the file open and
        nothing queued (so nothing submitted earlier is overtaken); else ``None``.
        Also ``None`` when this process's turn is due to end: the writer then hands over."""
        # the writer holds _io only briefly when idle (its look, every _WAITER_POLL, whether
        # another process waits): wait that out rather than hand the commit to it
        if self._file.con is None or not self._queue.empty() or not self._io.acquire(timeout=_IDLE_LOOK):
            return None
        try:
            con = self._file.con
            if con is None or not self._queue.empty() or self._file.turns.yield_due():
                return None
            write = _Write(events, values, Future(), urgent=True)
            try:
                self._file.check_intact()
            except StoreError as exc:
                write.future.set_exception(exc)
                return write.future
            self._commit(con, [write])
            self._file.note_size()
            self._last_use = time.monotonic()
            return write.future
        finally:
            self._io.release()

    def flush(self, timeout: float | None = None) -> None:
        if self._closed:
            raise failures.error(self.path, "closed", "the store is closed", "open it again with open_store")
        future: Future[None] = Future()
        self._queue.put(_Flush(future))
        self._wake.set()
        future.result(timeout)

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        return self._read_history(lambda con: batches.frame(con, sql, params))

    def run_events(self, run_id: str) -> list[Event]:
        sql = "SELECT run_id, seq, epoch_us(ts), step, event, payload FROM events WHERE run_id = ? ORDER BY seq"
        rows = self._read_history(lambda con: con.execute(sql, [run_id]).fetchall())
        return [
            Event(run_id=r[0], seq=r[1], at=r[2] / 1_000_000, step=r[3], event=r[4], payload=json.loads(r[5] or "{}"))
            for r in rows
        ]

    def _read_history(self, read: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """A read that may scan the whole history: with all of DuckDB's threads (storefile.py)."""

        def with_all_cores(con: duckdb.DuckDBPyConnection) -> T:
            with self._file.all_cores(con):
                return read(con)

        return self._call(with_all_cores, write=False)

    def load_value(self, run_id: str, step: str, name: str, output: dict[str, Any]) -> Any:
        codec = output["codec"]
        if "value" in output or codec in _NOT_IN_VALUES:
            return codecs.decode(codec, inline=output.get("value"))
        # fetchall, never fetchone: a result left open blocks the connection's next query
        rows = self._call(
            lambda con: con.execute(
                "SELECT data FROM _values WHERE run_id = ? AND step = ? AND name = ? AND hash = ?",
                [run_id, step, name, output["hash"]],
            ).fetchall(),
            write=False,
        )
        if rows:
            return codecs.decode(codec, blob=rows[0][0])
        table_name = output.get("table")
        if table_name:  # written before tables were also kept as Arrow streams
            arrow = self._call(
                lambda con: con.sql(f'SELECT * FROM "{table_name}"').to_arrow_table(), write=False  # noqa: S608
            )
            return codecs.decode(codec, table=batches.read_all(arrow))
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
            ).fetchall(),
            write=False,
        )
        return [Decision(r[0], r[1], r[2], r[3], r[4], r[5], batches.utc(r[6])) for r in rows]

    def heartbeat(self, run_ids: list[str]) -> None:
        """Renew this process's leases now (they are renewed every ``ttl / 10`` seconds anyway)."""
        if self._runs.owned and not self._file.read_only:
            self._call(self._runs.renew)

    def check_writable(self) -> None:
        if self._file.read_only:
            raise self._file.read_only_error()

    def claim_run(self, run_id: str) -> int:
        return self._call(lambda con: self._claim(con, run_id))

    def release_run(self, run_id: str) -> None:
        self._call(lambda con: self._runs.give_back(con, [run_id]))

    def run_owner(self, run_id: str) -> lease.Lease | None:
        return self._call(lambda con: lease_table.lease_of(con, run_id), write=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_renewing.set()
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(timeout=30 + _CLOSE_WAIT)

    # -- the writer thread ----------------------------------------------------

    def _call(
        self, fn: Callable[[duckdb.DuckDBPyConnection], T], timeout: float | None = None, *, write: bool = True,
        chore: bool = False,
    ) -> T:  # fmt: skip
        if self._closed:
            raise failures.error(self.path, "closed", "the store is closed", "open it again with open_store")
        if write and self._file.read_only:
            raise self._file.read_only_error()
        future: Future[T] = Future()
        self._queue.put(_Call(fn, future, write, chore))
        self._wake.set()
        return future.result(timeout)

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._quiet_wait())
            except queue.Empty:
                with self._io:  # unless someone committed at once meanwhile
                    if self._file.con is not None and self._let_go():
                        self._release()
                continue
            with self._io:
                batch = self._gather(first)
                stop = any(op is _STOP for op in batch)
                self._handle([op for op in batch if op is not _STOP])
                if any(_keeps_the_file(op) for op in batch):
                    self._last_use = time.monotonic()
                if stop:
                    self._shut()
                    return
                if self._file.con is not None and self._let_go():
                    self._release()

    def _quiet_wait(self) -> float | None:
        """How long to wait for work: forever without the file; with it, until the idle
        release, looking now and then whether another process waits for it."""
        if self._file.con is None:
            return None
        left = self._last_use + self.idle_release - time.monotonic()
        return max(0.0, min(left, _WAITER_POLL))

    def _let_go(self) -> bool:
        """Whether this turn with the file ends now (see the module docstring)."""
        if time.monotonic() - self._last_use >= self.idle_release:
            # no write for a while (reads and renewals do not count: see _keeps_the_file), so a
            # process that only queries lets go right after each query; one whose run just
            # ended keeps the file a moment longer, as its next run is often near
            return True
        return self._file.turns.yield_due()

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
        if all(isinstance(op, _Flush) for op in batch):
            for op in batch:  # everything before them is done: no turn with the file needed
                op.future.set_result(None)
            return
        try:
            con = self._connect()
            self._file.check_intact()
        except BaseException as exc:  # noqa: BLE001  (every waiter must hear of it)
            if self._file.damage is not None:
                self._release()
            for op in batch:
                if isinstance(op, _Write):
                    self._runs.mark_failed(op.runs(), exc)
                op.future.set_exception(exc)
            return
        writes: list[_Write] = []
        for op in batch:
            if isinstance(op, _Write):
                writes.append(op)
                continue
            self._commit(con, writes)
            writes = []
            if isinstance(op, _Flush):
                op.future.set_result(None)
                continue
            if self._file.con is None:  # a failure above closed the database
                op.future.set_exception(self._file.damage or failures.error(self.path, failures.FAILED, "it closed"))
                continue
            try:
                op.future.set_result(op.fn(con))
            except BaseException as exc:  # noqa: BLE001
                op.future.set_exception(self._failure(exc))
            finally:
                # a result an op left unread would make every later query on this
                # connection fail ("unfinished result from execute()")
                with contextlib.suppress(duckdb.Error):
                    con.abort()
        self._commit(con, writes)
        self._file.note_size()

    def _commit(self, con: duckdb.DuckDBPyConnection, writes: list[_Write]) -> None:
        if self._runs.fenced:
            writes = self._fence(con, writes)
        if not writes:
            return
        if self._file.con is None:  # a failure closed the database; the next batch opens it again
            for w in writes:
                w.future.set_exception(self._file.damage or failures.error(self.path, failures.FAILED, "it closed"))
            return
        events = [e for w in writes for e in w.events]
        values = [v for w in writes for v in w.values]
        started, ended = batches.lease_changes(events)
        try:
            batches.write(con, events, values, leases=self._runs.lease_rows(started, ended))
        except Exception as exc:  # noqa: BLE001  (find the bad write; commit the others)
            error = self._failure(exc)
            if len(writes) == 1 or self._file.con is None or self._file.damage is not None:
                for w in writes:
                    self._runs.mark_failed(w.runs(), error)
                    w.future.set_exception(error)
                return
            for w in writes:
                self._commit(con, [w])
            return
        self._runs.committed(started, ended)
        if started or ended:  # what this process does changed: say so to whoever waits for the file
            self._start_renewing()
            self._file.turns.describe(self._about())
        for w in writes:
            w.future.set_result(None)

    def _fence(self, con: duckdb.DuckDBPyConnection, writes: list[_Write]) -> list[_Write]:
        kept: list[_Write] = []
        for w in writes:
            refusal = self._runs.refusal(con, w.runs(), w.events)
            if refusal is None:
                kept.append(w)
            else:
                w.future.set_exception(refusal)
        return kept

    def _failure(self, exc: BaseException) -> BaseException:
        return self._file.failure(exc)

    # -- turns with the file (storefile.py) ----------------------------------------

    def _connect(self, wait: float | None = None) -> duckdb.DuckDBPyConnection:
        return self._file.open(self._about(), self._ready, wait)

    def _ready(self, con: duckdb.DuckDBPyConnection) -> None:
        """At the start of each turn: the schema once, and which of this process's runs
        another process took over meanwhile."""
        if not self._prepared:
            if not self._file.read_only:  # the schema, the views, dead local owners' runs interrupted
                con.execute(schema.TABLES)
                con.execute(schema.VIEWS)
                lease_table.sweep(con, self._owner)
            self._prepared = True
        self._runs.verify(con)

    def _release(self) -> None:
        self._file.close()

    def _shut(self) -> None:
        """Closing: give back the leases of runs still owned here (their process is ending),
        let go of the file and of the lock file."""
        if self._runs.owned and not self._file.read_only and self._file.damage is None:
            with contextlib.suppress(Exception):
                self._runs.give_back(self._connect(wait=_CLOSE_WAIT), list(self._runs.owned))
        self._file.shut()

    def _about(self) -> dict[str, Any]:
        """Who this process is and what it does, for a StoreLocked of another process."""
        runs = sorted(self._runs.owned)
        if not runs:
            doing = "querying it"
        elif len(runs) == 1:
            doing = f"running a flow (run {runs[0]})"
        else:
            doing = f"running {len(runs)} flows (runs {', '.join(runs[:3])}{', ...' if len(runs) > 3 else ''})"
        return {"pid": self._owner.pid, "host": self._owner.host, "doing": doing}

    # -- leases (lease.py, owned.py); on the writer thread, during this process's turn -------

    def _claim(self, con: duckdb.DuckDBPyConnection, run_id: str) -> int:
        epoch = self._runs.claim(con, run_id)
        self._start_renewing()
        self._file.turns.describe(self._about())
        return epoch

    def _start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = threading.Thread(
                target=self._renew_forever, name=f"flownb-lease:{Path(self.path).name}", daemon=True
            )
            self._renewer.start()

    def _renew_forever(self) -> None:
        """Renew this process's leases every ``ttl / 10`` seconds while it owns runs.

        A thread of its own: the engine's loop may be busy for as long as a step
        takes, and a lease must outlive any step. The renewal waits for a turn
        with the file like any write; a failed one is tried again next period."""
        period = lease.renew_every(self.lease_ttl)
        while not self._stop_renewing.wait(period):
            if self._runs.owned:
                with contextlib.suppress(Exception):
                    self._call(self._runs.renew, chore=True)


def _keeps_the_file(op: Any) -> bool:
    """Writes keep the file for ``idle_release`` more seconds (the next commit of a live run is
    near); reads and chores do not: a run that polls its inbox every few seconds, or a lease
    renewal, would otherwise hold the file most of the time."""
    return isinstance(op, _Write) or (isinstance(op, _Call) and op.write and not op.chore)
