"""The store interface the engine writes to, and the records it keeps."""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flownb.store.codecs import Encoded
from flownb.store.operations import Operations

if TYPE_CHECKING:
    import pandas as pd

    from flownb.store.lease import Lease

DEFAULT_DB = Path(".flownb") / "flownb.duckdb"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Event:
    """One row of the append-only ``events`` table."""

    run_id: str
    seq: int
    event: str
    step: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    """When it happened, in seconds since the epoch (cheaper to take than a datetime)."""

    @property
    def ts(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A step output too large for its event, or a table, kept beside it."""

    run_id: str
    step: str
    name: str
    encoded: Encoded
    table_name: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    run_id: str
    step: str
    decision: str
    decided_by: str | None
    comment: str | None
    via: str
    ts: datetime


class Store(Operations, ABC):
    """Where runs are recorded. Writes are queued and group-committed.

    What flownb asks of a store, it asks by name (store/operations.py).

    ``submit`` returns a future that is done once the records are committed;
    the engine waits for it before starting any dependent of a completed step
    (``durability="sync"``). Records are only ever appended.

    Ownership (store/lease.py): a run's lease is taken with its ``run_started``
    record and given back with its ``run_ended``, in the same transaction; a resume
    takes it with :meth:`claim_run`. A store commits a run's records only while this
    process holds the run's current epoch (a late record of an older one is refused
    with :class:`~flownb.errors.RunActive`), and a write of a run whose earlier
    record failed never records the run as succeeded.
    """

    path: str
    #: called as ``listener(run_id, lease)`` (from the store's thread) when this process finds
    #: that another one took over a run it owned; ``lease`` is the new owner's
    lease_listeners: list[Callable[[str, Lease | None], None]]

    @abstractmethod
    def submit(
        self, events: list[Event], values: list[StoredValue] | None = None, *, urgent: bool = True
    ) -> Future[None]:
        """Queue records; ``urgent=False`` lets the store gather them with others first."""

    def commit_now(self, events: list[Event], values: list[StoredValue]) -> Future[None] | None:
        """Commit on the calling thread if that needs no waiting, else ``None`` (then ``submit``).

        For a chain: a worker that commits its step itself spares the writer's and
        the engine's wake-ups. Stores without a writer thread have nothing to spare.
        """
        return None

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is committed."""

    @abstractmethod
    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame: ...

    @abstractmethod
    def run_events(self, run_id: str) -> list[Event]:
        """Every event of a run, in order."""

    @abstractmethod
    def load_value(self, run_id: str, step: str, name: str, output: dict[str, Any]) -> Any:
        """The value of an ``output`` event's payload."""

    @abstractmethod
    def post_decision(self, decision: Decision) -> None:
        """Record an approval decision made outside the run's own engine."""

    @abstractmethod
    def decisions(self, run_id: str) -> list[Decision]:
        """Decisions posted for a run through :meth:`post_decision`."""

    @abstractmethod
    def heartbeat(self, run_ids: list[str]) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Commit what is queued, give back the leases of runs still owned here, let go of the file."""

    @abstractmethod
    def claim_run(self, run_id: str) -> int:
        """Take the run's lease for this process (a resume does, before it reads the run); the new epoch.

        Atomic between processes: of two concurrent claims exactly one succeeds. Raises
        :class:`~flownb.errors.RunActive` while another live process owns the run.
        The caller makes sure the run is not active in this process.
        """

    @abstractmethod
    def release_run(self, run_id: str) -> None:
        """Give back a lease this process claimed but will not use (the resume failed before starting)."""

    @abstractmethod
    def run_owner(self, run_id: str) -> Lease | None:
        """The run's lease as recorded (``None`` when it has none: a run of an older flownb)."""

    def check_writable(self) -> None:
        """Raise :class:`~flownb.errors.StoreError` now if runs cannot be recorded here (a
        read-only file): a run is refused before it starts, not failed by its first record."""
        return None  # a store that can always record (in memory) has nothing to check


def resolve_path(db: str | os.PathLike[str] | None) -> str:
    if db is None:
        db = os.environ.get("FLOWNB_DB") or DEFAULT_DB
    if str(db) == ":memory:":
        return ":memory:"
    return str(Path(db).expanduser().resolve())


_STORES: dict[str, Store] = {}


def open_store(db: str | os.PathLike[str] | Store | None = None) -> Store:
    """The process's one store for ``db`` (one writer per file per process).

    ``":memory:"`` named here is a new in-memory store at each call, shared with no one:
    whoever asks for it keeps the store (``Flow(db=":memory:")`` does). ``FLOWNB_DB=:memory:``
    makes the default store one in-memory store for the whole process.
    """
    if isinstance(db, Store):
        return db
    if db is not None and str(db) == ":memory:":
        from flownb.store.memory import MemoryStore

        return MemoryStore()
    path = resolve_path(db)
    store = _STORES.get(path)
    if store is None:
        if path == ":memory:":
            from flownb.store.memory import MemoryStore

            store = MemoryStore()
        else:
            from flownb.store.duckdb_store import DuckDBStore

            store = DuckDBStore(path)
        _STORES[path] = store
    return store


@atexit.register
def _close_all() -> None:
    """Commit what is queued and close the files before the interpreter goes."""
    for store in list(_STORES.values()):
        with contextlib.suppress(Exception):  # exiting: nothing left to tell
            store.close()


def forget_store(store: Store) -> None:
    """Close a store and drop it from the process's registry."""
    for key, value in list(_STORES.items()):
        if value is store:
            del _STORES[key]
    store.close()
