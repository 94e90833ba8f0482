"""The runs one process owns in one store file, and those it must no longer write.

The DuckDB store's writer thread keeps one :class:`OwnedRuns` (its alone; every
method runs during the process's turn with the file). Kept here:

* a run is owned from the commit of its ``run_started`` (epoch 1) or a claim
  (``epoch + 1``) until the commit of its ``run_ended`` or a give-back;
* at the start of each turn :meth:`OwnedRuns.verify` reads the leases of the owned
  runs: one whose lease changed was taken over, and is *lost*;
* :meth:`OwnedRuns.refusal` is the fence: no record of a lost run is committed, and
  no record that would end succeeded a run one of whose records failed to commit
  (that run is given back instead, so it shows as interrupted, resumable).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import duckdb

from flownb.errors import RunActive
from flownb.store import failures, lease_table
from flownb.store.base import Event
from flownb.store.batches import ENDED
from flownb.store.lease import Lease, Owner

Listener = Callable[[str, Lease | None], None]


class OwnedRuns:
    def __init__(self, path: str, owner: Owner, ttl: float, listeners: list[Listener]) -> None:
        self.path = path
        self.owner = owner
        self.ttl = ttl
        self.listeners = listeners
        #: run -> the epoch this process holds
        self.owned: dict[str, int] = {}
        #: runs another process took over from this one: their records are refused
        self.lost: dict[str, Lease | None] = {}
        #: runs a record of which failed to commit: they never end succeeded
        self.failed: dict[str, BaseException] = {}

    def __bool__(self) -> bool:
        return bool(self.owned)

    @property
    def fenced(self) -> bool:
        """Whether any write may be refused (the common case pays nothing for the fence)."""
        return bool(self.lost or self.failed)

    def lease_rows(self, started: list[str], ended: list[str]) -> Callable[[duckdb.DuckDBPyConnection], None] | None:
        """What a commit writes to ``_leases`` in its transaction, for the runs it starts and ends."""
        if not started and not ended:
            return None

        def write(con: duckdb.DuckDBPyConnection) -> None:
            lease_table.take_new(con, self.owner, self.ttl, started)
            if ended:
                lease_table.give_back(con, self.owner, ended)

        return write

    def committed(self, started: list[str], ended: list[str]) -> None:
        for run in started:
            self.owned[run] = 1
        for run in ended:
            self.owned.pop(run, None)
            self.failed.pop(run, None)

    def claim(self, con: duckdb.DuckDBPyConnection, run_id: str) -> int:
        epoch = lease_table.claim(con, self.owner, self.ttl, run_id)
        self.owned[run_id] = epoch
        self.lost.pop(run_id, None)
        self.failed.pop(run_id, None)
        return epoch

    def give_back(self, con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> None:
        lease_table.give_back(con, self.owner, run_ids)
        for run in run_ids:
            self.owned.pop(run, None)

    def renew(self, con: duckdb.DuckDBPyConnection) -> None:
        lease_table.renew(con, self.owner)

    def verify(self, con: duckdb.DuckDBPyConnection) -> None:
        """At the start of a turn: which owned runs another process took over meanwhile."""
        if not self.owned:
            return
        found = lease_table.current(con, list(self.owned))
        for run, epoch in list(self.owned.items()):
            now = found.get(run)
            if now is None or now.epoch != epoch or now.owner != self.owner or not now.held:
                del self.owned[run]
                self.lost[run] = now
                for listener in list(self.listeners):
                    with contextlib.suppress(Exception):  # a listener must never break the writer
                        listener(run, now)

    def refusal(self, con: duckdb.DuckDBPyConnection, runs: Iterable[str], events: list[Event]) -> BaseException | None:
        """Why a write of these runs' records may not be committed, or ``None``."""
        for run in runs:
            if run in self.lost:
                taker = self.lost[run]
                return RunActive(
                    run, taker.owner.pid if taker else None, taker.owner.host if taker else None,
                    detail=f" (it took the run over{f', epoch {taker.epoch}' if taker else ''}; "
                    "this process's late records of it are refused)",
                )  # fmt: skip
            if run in self.failed and _ends_succeeded(events, run):
                with contextlib.suppress(duckdb.Error):  # it shows as interrupted (resumable), not running forever
                    self.give_back(con, [run])
                return failures.error(
                    self.path, failures.FAILED,
                    f"run {run} is not recorded as succeeded: an earlier record of it could not be written "
                    f"({self.failed[run]})", "resume the run once the store works again",
                )  # fmt: skip
        return None

    def mark_failed(self, runs: Iterable[str], error: BaseException) -> None:
        if not isinstance(error, RunActive):
            for run in runs:
                self.failed.setdefault(run, error)


def _ends_succeeded(events: list[Event], run: str) -> bool:
    return any(e.run_id == run and e.event == ENDED and e.payload.get("status") == "succeeded" for e in events)
