"""The ``_leases`` table: lease.py's rules as SQL, run by the DuckDB store during its turn.

One row per run, changed only by a process that has the file (so a read, a check
and a write in one call are atomic between processes): inserted with the run's
``run_started`` by its first owner (epoch 1), replaced by a takeover (``epoch + 1``),
``renewed_at`` moved on by the owner, ``state`` set to ``released`` with the run's
``run_ended`` (or when its owner closes the store) and to ``dead`` by a process that
finds the owner gone from its node.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import duckdb

from flownb.errors import RunActive
from flownb.store import lease
from flownb.store.lease import Lease, Owner

COLUMNS = "run_id, epoch, owner, pid, host, node, proc_start, epoch_us(renewed_at), ttl_s, state"
_INSERT = "INSERT INTO _leases VALUES (?, ?, ?, ?, ?, ?, ?, now(), ?, 'held')"
_LIVE = ", ".join(f"'{s}'" for s in lease.LIVE_STATUSES)
#: a run_status ``interrupted`` for each run whose latest recorded status is live
_INTERRUPTED = (
    "INSERT INTO events SELECT run_id, max(seq) + 1, now(), NULL, 'run_status', "  # noqa: S608  (constants only)
    "'{\"status\":\"interrupted\",\"reason\":\"its process is gone\"}' "
    "FROM events WHERE run_id IN (SELECT unnest(?)) GROUP BY run_id "
    "HAVING arg_max(payload->>'status', seq) FILTER (WHERE event IN ('run_started', 'run_status', 'run_ended')) "
    f"IN ({_LIVE})"
)


def take_new(con: duckdb.DuckDBPyConnection, owner: Owner, ttl: float, run_ids: list[str]) -> None:
    """The leases of new runs (epoch 1), in the transaction of their ``run_started``."""
    for run in run_ids:
        con.execute(_INSERT, [run, 1, owner.key, owner.pid, owner.host, owner.node, owner.started, ttl])


def give_back(con: duckdb.DuckDBPyConnection, owner: Owner, run_ids: list[str]) -> None:
    """This owner's leases of these runs released (the runs ended, or their process is closing)."""
    con.execute(
        "UPDATE _leases SET state = 'released' WHERE owner = ? AND state = 'held' AND run_id IN (SELECT unnest(?))",
        [owner.key, run_ids],
    )


def renew(con: duckdb.DuckDBPyConnection, owner: Owner) -> None:
    con.execute("UPDATE _leases SET renewed_at = now() WHERE owner = ? AND state = 'held'", [owner.key])


def claim(con: duckdb.DuckDBPyConnection, owner: Owner, ttl: float, run_id: str) -> int:
    """Take the run's lease with a new epoch, or raise ``RunActive`` while its owner lives."""
    sweep(con, owner)
    current = lease_of(con, run_id)
    if current is not None and not lease.may_take_over(current, owner):
        ago = time.time() - current.renewed_at
        raise RunActive(run_id, current.owner.pid, current.owner.host, detail=f" (its lease renewed {ago:.0f}s ago)")
    epoch = (current.epoch if current else 0) + 1
    with _transaction(con):
        con.execute("DELETE FROM _leases WHERE run_id = ?", [run_id])
        con.execute(_INSERT, [run_id, epoch, owner.key, owner.pid, owner.host, owner.node, owner.started, ttl])
    return epoch


def current(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> dict[str, Lease]:
    rows = con.execute(f"SELECT {COLUMNS} FROM _leases WHERE run_id IN (SELECT unnest(?))", [run_ids]).fetchall()  # noqa: S608
    return {r[0]: _lease(r) for r in rows}


def lease_of(con: duckdb.DuckDBPyConnection, run_id: str) -> Lease | None:
    try:
        rows = con.execute(f"SELECT {COLUMNS} FROM _leases WHERE run_id = ?", [run_id]).fetchall()  # noqa: S608
    except duckdb.CatalogException:  # a read-only file of an older flownb: no leases at all
        return None
    return _lease(rows[0]) if rows else None


def sweep(con: duckdb.DuckDBPyConnection, owner: Owner) -> None:
    """Leases of dead owners on this node become dead; their live runs are recorded interrupted,
    so a run whose process was killed shows so at once to whoever opens the store next."""
    rows = con.execute(
        f"SELECT {COLUMNS} FROM _leases WHERE state = 'held' AND node = ? AND owner <> ?",  # noqa: S608
        [owner.node, owner.key],
    ).fetchall()
    dead = lease.dead_on_this_node([_lease(r) for r in rows])
    if not dead:
        return
    with _transaction(con):
        for d in dead:
            con.execute("UPDATE _leases SET state = 'dead' WHERE run_id = ? AND epoch = ?", [d.run_id, d.epoch])
        con.execute(_INTERRUPTED, [[d.run_id for d in dead]])


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Any:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT has ended it already
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _lease(row: tuple[Any, ...]) -> Lease:
    run_id, epoch, _key, pid, host, node, started, renewed_us, ttl, state = row
    return Lease(run_id, int(epoch), Owner(int(pid), host, node, float(started)), renewed_us / 1e6, float(ttl), state)
