"""The ``schedules`` table: cron schedules of flows, and the claim of each fire time.

A schedule starts its flow at every time its cron expression names, in its time
zone (``zoneinfo``); croniter computes the times, and daylight-saving transitions
follow croniter's rules: a wall-clock time skipped by a spring-forward fires at
the next valid time (02:30 becomes 03:00), and one a fall-back repeats fires at
both instants (each is a fire time of its own, with a run of its own).

Guarantees kept here:

* **Nothing bad is stored.** A cron expression croniter refuses, a time zone
  ``zoneinfo`` does not know, params that are not a JSON object or a catch-up
  policy other than ``latest``/``none`` are refused (:class:`FlowDefinitionError`)
  before anything is written.
* **Each fire time is claimed once.** :func:`claim` moves a schedule's
  ``last_fire`` forward with one compare-and-set statement. The DuckDB store runs
  it during its turn with the file, which no other process shares, so of two
  servers (or two restarts) claiming the same fire exactly one gets it. The run
  the claimer then starts has the id :meth:`Schedule.run_id` derives from the
  schedule and the fire time, so even a second start of it is refused by the
  engine.
* **Redefining is idempotent.** :func:`define` with the definition a schedule
  already has changes nothing (a notebook cell run again does not skip or repeat
  fires); a new cron expression or time zone starts counting fires from now.

The in-memory store keeps schedules in Python (its SQL is rebuilt for each query
and keeps no table of its own), behind the same operations.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from flownb.errors import FlowDefinitionError, FlownbError

if TYPE_CHECKING:
    from flownb.store.base import Store

Catchup = Literal["latest", "none"]
CATCHUPS: tuple[str, ...] = ("latest", "none")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_STAMP = "%Y%m%dT%H%M%SZ"

TABLE = """
CREATE TABLE IF NOT EXISTS schedules (
    name VARCHAR PRIMARY KEY, flow VARCHAR NOT NULL, cron VARCHAR NOT NULL, tz VARCHAR NOT NULL,
    params JSON, catchup VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    last_fire TIMESTAMPTZ, last_run_id VARCHAR, claimed_at TIMESTAMPTZ, claimed_by VARCHAR)
"""
# last_fire: the latest fire time claimed (its run started, or skipped by catchup="none");
# last_run_id: the run started for it (NULL when skipped); claimed_by: "pid@host" of the claimer.
_COLUMNS = (
    "name, flow, cron, tz, params, catchup, epoch_us(created_at), epoch_us(last_fire), last_run_id, "
    "epoch_us(claimed_at), claimed_by"
)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One row of ``schedules``: when a flow runs by itself, and the fire it reached."""

    name: str
    flow: str
    cron: str
    tz: str = "UTC"
    params: dict[str, Any] = field(default_factory=dict)
    catchup: Catchup = "latest"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_fire: datetime | None = None
    last_run_id: str | None = None
    claimed_at: datetime | None = None
    claimed_by: str | None = None

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (UTC, aware)."""
        it = _iterator(self.cron, after.astimezone(_zone(self.tz)))
        fire: datetime = it.get_next(datetime)
        return fire.astimezone(UTC)

    def latest_fire(self, at_or_before: datetime) -> datetime:
        """The last fire time at or before ``at_or_before`` (UTC, aware)."""
        # croniter's get_prev is strictly before its start: start a microsecond later
        it = _iterator(self.cron, (at_or_before + timedelta(microseconds=1)).astimezone(_zone(self.tz)))
        fire: datetime = it.get_prev(datetime)
        return fire.astimezone(UTC)

    def run_id(self, fire: datetime) -> str:
        """The id of the run a fire time starts: the same in every process, so a fire runs once."""
        return f"{self.name}-{fire.astimezone(UTC).strftime(_STAMP)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "flow": self.flow, "cron": self.cron, "tz": self.tz, "params": self.params,
            "catchup": self.catchup, "created_at": _iso(self.created_at), "last_fire": _iso(self.last_fire),
            "last_run_id": self.last_run_id,
        }  # fmt: skip


def validate(
    flow: str, cron: str, *, tz: str = "UTC", params: Mapping[str, Any] | None = None, name: str | None = None,
    catchup: str = "latest",
) -> Schedule:  # fmt: skip
    """A checked schedule (not stored): raise :class:`FlowDefinitionError` saying what is wrong.

    ``name`` defaults to the flow's name (other characters than letters, digits, ``_``
    and ``-`` made ``-``), so that defining a flow's schedule again replaces it.
    """
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", flow).strip("-_")[:64] or "schedule"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FlowDefinitionError(
            f"schedule name {name!r} of flow {flow!r}: use 1 to 64 letters, digits, '_' or '-' "
            "(starting with a letter or digit); pass name=..."
        )
    if not isinstance(cron, str) or not cron.strip():
        raise FlowDefinitionError(f"schedule {name!r}: the cron expression is empty")
    cron = " ".join(cron.split())
    _check_cron(name, cron)
    _zone_checked(name, tz)
    if catchup not in CATCHUPS:
        raise FlowDefinitionError(f"schedule {name!r}: catchup={catchup!r}; use 'latest' or 'none'")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise FlowDefinitionError(f"schedule {name!r}: params must be a dict, not {type(params).__name__}")
    try:
        plain = json.loads(json.dumps(dict(params)))
    except (TypeError, ValueError) as exc:
        raise FlowDefinitionError(f"schedule {name!r}: params must be JSON ({exc})") from None
    return Schedule(name=name, flow=flow, cron=cron, tz=tz, params=plain, catchup=catchup)  # type: ignore[arg-type]


# -- the named operations ------------------------------------------------------------------------------


def define(store: Store, schedule: Schedule) -> Schedule:
    """Store a validated schedule (see :func:`validate`); the one as stored.

    Unchanged: nothing is written. A new cron or time zone counts fires from now;
    other changes (params, catch-up, flow) keep the fire it reached.
    """
    if _is_memory(store):
        return _memory(store).define(schedule)
    _ensure(store)
    now = datetime.now(UTC)
    old = get(store, schedule.name)
    if old is not None and _same(old, schedule):
        return old
    restart = old is None or (old.cron, old.tz) != (schedule.cron, schedule.tz)
    store.query(
        "INSERT INTO schedules (name, flow, cron, tz, params, catchup, created_at, last_fire) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET flow = excluded.flow, "
        "cron = excluded.cron, tz = excluded.tz, params = excluded.params, catchup = excluded.catchup"
        + (", last_fire = excluded.last_fire, last_run_id = NULL" if restart else ""),
        [schedule.name, schedule.flow, schedule.cron, schedule.tz, json.dumps(schedule.params), schedule.catchup,
         now, now],
    )  # fmt: skip
    found = get(store, schedule.name)
    assert found is not None
    return found


def get(store: Store, name: str) -> Schedule | None:
    found = [s for s in all_schedules(store) if s.name == name]
    return found[0] if found else None


def all_schedules(store: Store, flow: str | None = None) -> list[Schedule]:
    """Every schedule (of ``flow``), by name."""
    if _is_memory(store):
        rows = _memory(store).all()
    else:
        _ensure(store)
        df = store.query(f"SELECT {_COLUMNS} FROM schedules ORDER BY name")  # noqa: S608  (constants only)
        rows = [_from_row(tuple(r)) for r in df.itertuples(index=False)]
    return [s for s in rows if flow is None or s.flow == flow]


def remove(store: Store, name: str) -> bool:
    """Delete a schedule; False when there was none of that name."""
    if _is_memory(store):
        return _memory(store).remove(name)
    _ensure(store)
    df = store.query("DELETE FROM schedules WHERE name = ? RETURNING name", [name])
    return not df.empty


def claim(
    store: Store, name: str, fire: datetime, run_id: str | None, *, by: str, at: datetime | None = None
) -> bool:
    """Claim fire time ``fire`` of a schedule for this process: True for exactly one claimer.

    The claim moves ``last_fire`` forward to ``fire`` only if it is still before it:
    one statement, atomic between the processes sharing the store. ``run_id`` is the
    run the claimer starts (None: the fire is skipped, as catch-up ``none`` does); ``at``
    is when, on the claimer's clock (default: now).
    """
    at = at or datetime.now(UTC)
    if _is_memory(store):
        return _memory(store).claim(name, fire, run_id, by, at)
    df = store.query(
        "UPDATE schedules SET last_fire = ?, last_run_id = ?, claimed_at = ?, claimed_by = ? "
        "WHERE name = ? AND (last_fire IS NULL OR last_fire < ?) RETURNING name",
        [fire, run_id, at, by, name, fire],
    )
    return not df.empty


def reclaim(
    store: Store, name: str, fire: datetime, claimed_at: datetime, *, by: str, at: datetime | None = None
) -> bool:
    """Take over a claim whose run never started (its claimer died): True for exactly one taker.

    Only the claim as it was read (same fire, same ``claimed_at``) is taken over, so two
    servers that both find it stale do not both start its run.
    """
    at = at or datetime.now(UTC)
    if _is_memory(store):
        return _memory(store).reclaim(name, fire, claimed_at, by, at)
    df = store.query(
        "UPDATE schedules SET claimed_at = ?, claimed_by = ? "
        "WHERE name = ? AND last_fire = ? AND claimed_at = ? RETURNING name",
        [at, by, name, fire, claimed_at],
    )
    return not df.empty


# -- helpers -------------------------------------------------------------------------------------------


def _check_cron(name: str, cron: str) -> None:
    fields = cron.split()
    if not cron.startswith("@") and len(fields) not in (5, 6):
        raise FlowDefinitionError(
            f"schedule {name!r}: {cron!r} has {len(fields)} fields; a cron expression has 5 "
            "(minute hour day month weekday) or 6 (and seconds last)"
        )
    try:
        _iterator(cron, datetime.now(UTC)).get_next(datetime)
    except FlownbError:
        raise
    except Exception as exc:  # noqa: BLE001  (croniter's errors have no common base but ValueError/KeyError)
        raise FlowDefinitionError(f"schedule {name!r}: bad cron expression {cron!r} ({exc})") from None


def _iterator(cron: str, start: datetime) -> Any:
    try:
        from croniter import croniter  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - the serve extra is missing
        raise FlownbError("schedules need croniter: pip install 'flownb[serve]'") from None
    return croniter(cron, start)


def _zone(tz: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


def _zone_checked(name: str, tz: str) -> None:
    from zoneinfo import ZoneInfoNotFoundError

    if not isinstance(tz, str) or not tz or tz.startswith(("/", ".")) or ".." in tz:
        raise FlowDefinitionError(f"schedule {name!r}: unknown time zone {tz!r}; use an IANA name such as 'UTC'")
    try:
        _zone(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise FlowDefinitionError(
            f"schedule {name!r}: unknown time zone {tz!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None


def _same(old: Schedule, new: Schedule) -> bool:
    return (old.flow, old.cron, old.tz, old.params, old.catchup) == (
        new.flow, new.cron, new.tz, new.params, new.catchup,
    )  # fmt: skip


_ENSURED: weakref.WeakSet[Any] = weakref.WeakSet()


def _ensure(store: Store) -> None:
    """The table, created the first time this process uses schedules on this store."""
    if store not in _ENSURED:
        store.query(TABLE)
        _ENSURED.add(store)


def _from_row(r: tuple[Any, ...]) -> Schedule:
    name, flow, cron, tz, params, catchup, created, last, last_run, claimed_at, claimed_by = r
    return Schedule(
        name=name, flow=flow, cron=cron, tz=tz, params=json.loads(params) if isinstance(params, str) else {},
        catchup=catchup, created_at=_utc(created) or datetime.now(UTC), last_fire=_utc(last),
        last_run_id=_text(last_run), claimed_at=_utc(claimed_at), claimed_by=_text(claimed_by),
    )  # fmt: skip


def _utc(us: Any) -> datetime | None:
    if us is None or us != us:  # noqa: PLR0124  (NaN: a NULL through pandas)
        return None
    return datetime.fromtimestamp(int(us) / 1_000_000, UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at is not None else None


# -- the in-memory store's schedules ---------------------------------------------------------------


def _is_memory(store: Store) -> bool:
    from flownb.store.memory import MemoryStore

    return isinstance(store, MemoryStore)


class _MemorySchedules:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, Schedule] = {}

    def define(self, schedule: Schedule) -> Schedule:
        from dataclasses import replace

        with self._lock:
            old = self._rows.get(schedule.name)
            if old is not None and _same(old, schedule):
                return old
            now = datetime.now(UTC)
            if old is None or (old.cron, old.tz) != (schedule.cron, schedule.tz):
                new = replace(schedule, created_at=old.created_at if old else now, last_fire=now)
            else:
                new = replace(old, flow=schedule.flow, params=schedule.params, catchup=schedule.catchup)
            self._rows[schedule.name] = new
            return new

    def all(self) -> list[Schedule]:
        with self._lock:
            return [self._rows[n] for n in sorted(self._rows)]

    def remove(self, name: str) -> bool:
        with self._lock:
            return self._rows.pop(name, None) is not None

    def claim(self, name: str, fire: datetime, run_id: str | None, by: str, at: datetime) -> bool:
        from dataclasses import replace

        with self._lock:
            row = self._rows.get(name)
            if row is None or (row.last_fire is not None and row.last_fire >= fire):
                return False
            self._rows[name] = replace(
                row, last_fire=fire, last_run_id=run_id, claimed_at=at, claimed_by=by
            )
            return True

    def reclaim(self, name: str, fire: datetime, claimed_at: datetime, by: str, at: datetime) -> bool:
        from dataclasses import replace

        with self._lock:
            row = self._rows.get(name)
            if row is None or row.last_fire != fire or row.claimed_at != claimed_at:
                return False
            self._rows[name] = replace(row, claimed_at=at, claimed_by=by)
            return True


_MEMORY: weakref.WeakKeyDictionary[Any, _MemorySchedules] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


def _memory(store: Store) -> _MemorySchedules:
    with _MEMORY_LOCK:
        found = _MEMORY.get(store)
        if found is None:
            found = _MEMORY[store] = _MemorySchedules()
        return found
