"""The store's views in Python: how the in-memory store answers the named operations.

Each reader here reads the events as the view of the same name in
``store/schema.py`` does, so the in-memory store needs no DuckDB for what
flownb itself asks (only users' SQL builds the views). Frames are built
through Arrow with the types DuckDB gives, so both stores hand users the same
columns and dtypes. tests/store/test_operations.py runs one suite over both
stores: the two readings cannot drift apart unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from flownb.store import lease
from flownb.store.base import Decision, Event

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_RUN_EVENTS = frozenset({"run_started", "run_status", "run_ended"})
_ATTEMPT_EVENTS = frozenset({"step_started", "step_waiting", "step_finished"})

#: the ``steps`` view's columns (without ``seq``) and their DuckDB types, as Arrow names them
STEP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "string"), ("step", "string"), ("attempt", "int32"), ("kind", "string"), ("status", "string"),
    ("level", "int32"), ("started_at", "time"), ("ended_at", "time"), ("duration_ms", "float64"),
    ("error_type", "string"), ("error", "string"), ("traceback", "string"), ("input_hash", "string"),
    ("output_hash", "string"), ("cached", "bool"), ("stdout", "string"), ("stderr", "string"),
    ("tokens_in", "int64"), ("tokens_out", "int64"), ("cost_usd", "float64"), ("reason", "string"),
    ("code_hash", "string"), ("inputs", "string"),
)  # fmt: skip
#: the ``runs`` view's columns flownb asks for, and their types
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "string"), ("flow", "string"), ("status", "string"), ("started_at", "time"), ("ended_at", "time"),
    ("duration_ms", "float64"), ("error", "string"), ("notebook", "string"), ("parent_run_id", "string"),
    ("trigger", "string"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the in-memory store holds, copied under its lock."""

    events: list[Event]
    inbox: list[Decision]
    leases: Mapping[str, lease.Lease]


def run_rows(snap: Snapshot) -> list[dict[str, Any]]:
    """The ``runs`` view: a row per started run."""
    by_run: dict[str, list[Event]] = {}
    for e in snap.events:
        if e.event in _RUN_EVENTS:
            by_run.setdefault(e.run_id, []).append(e)
    rows = []
    for run_id, events in by_run.items():
        started = [e for e in events if e.event == "run_started"]
        if not started:
            continue
        first, last = min(started, key=_seq), max(events, key=_seq)
        p, status = first.payload, last.payload.get("status")
        ended = status in _TERMINAL
        if status in lease.LIVE_STATUSES and _not_held(snap.leases.get(run_id)):
            status = "interrupted"
        rows.append({
            "run_id": run_id, "flow": _text(p.get("flow")), "status": _text(status),
            "started_at": _time(min(e.at for e in started)), "ended_at": _time(last.at) if ended else None,
            "duration_ms": (_micros(last.at) - _micros(min(e.at for e in started))) / 1000.0 if ended else None,
            "error": _text(last.payload.get("error")), "notebook": _text(p.get("notebook")),
            "parent_run_id": _text(p.get("parent_run_id")), "trigger": _text(p.get("trigger")) or "manual",
        })  # fmt: skip
    return rows


def step_rows(events: Iterable[Event]) -> list[dict[str, Any]]:
    """The ``steps`` view: a row per attempt, from its latest event."""
    latest: dict[tuple[str, str, Any], Event] = {}
    for e in events:
        if e.event in _ATTEMPT_EVENTS and e.step is not None:
            key = (e.run_id, e.step, e.payload.get("attempt"))
            if key not in latest or latest[key].seq < e.seq:
                latest[key] = e
    rows = []
    for e in latest.values():
        p = e.payload
        started = p.get("started_at")
        rows.append({
            "run_id": e.run_id, "step": e.step, "attempt": _int(p.get("attempt")), "kind": _text(p.get("kind")),
            "status": _text(p.get("status")), "level": _int(p.get("level")),
            "started_at": _seconds(float(started)) if started is not None else _time(e.at),
            "ended_at": _time(e.at) if e.event == "step_finished" else None,
            "duration_ms": _float(p.get("duration_ms")), "error_type": _text(p.get("error_type")),
            "error": _text(p.get("error")), "traceback": _text(p.get("traceback")),
            "input_hash": _text(p.get("input_hash")), "output_hash": _text(p.get("output_hash")),
            "cached": bool(p.get("cached") or False), "stdout": _text(p.get("stdout")),
            "stderr": _text(p.get("stderr")), "tokens_in": _int(p.get("tokens_in")),
            "tokens_out": _int(p.get("tokens_out")), "cost_usd": _float(p.get("cost_usd")),
            "reason": _text(p.get("reason")), "code_hash": _text(p.get("code_hash")),
            "inputs": _json(p["inputs"]) if p.get("inputs") is not None else None,
        })  # fmt: skip
    return rows


def approvals(snap: Snapshot, run_id: str) -> dict[str, str | None]:
    """The ``approvals`` view of one run: step -> its first decision (None while undecided)."""
    asked = {e.step for e in snap.events if e.run_id == run_id and e.event == "approval_requested" and e.step}
    decided: dict[str, tuple[float, str]] = {}
    posted = [(e.step, e.at, e.payload.get("decision")) for e in snap.events
              if e.run_id == run_id and e.event == "approval_decided" and e.step]  # fmt: skip
    posted += [(d.step, d.ts.timestamp(), d.decision) for d in snap.inbox if d.run_id == run_id]
    for step, at, decision in posted:
        if decision is not None and (step not in decided or at < decided[step][0]):
            decided[step] = (at, str(decision))
    return {step: decided[step][1] if step in decided else None for step in sorted(asked)}


def frame(rows: list[dict[str, Any]], columns: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """Rows as DuckDB would hand them over: through Arrow, with the view's types."""
    import pyarrow as pa

    schema = pa.schema([(name, _arrow_type(kind)) for name, kind in columns])
    table = pa.Table.from_pylist([{n: r[n] for n in schema.names} for r in rows], schema=schema)
    result: pd.DataFrame = table.to_pandas()
    return result


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    if kind == "time":
        return pa.timestamp("us", tz="Etc/UTC")
    return pa.type_for_alias(kind)


def _not_held(held: lease.Lease | None) -> bool:
    return held is None or held.state != lease.HELD  # this process owns every lease here: renewed as of now


def _seq(e: Event) -> int:
    return e.seq


def _micros(at: float) -> int:
    return int(at * 1_000_000)  # as the file store keeps ``ts``


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(_micros(at) / 1_000_000, UTC)


def _seconds(value: float) -> datetime:
    """``to_timestamp(seconds)``, which rounds to the microsecond (``ts`` was truncated)."""
    return datetime.fromtimestamp(round(value * 1_000_000) / 1_000_000, UTC)


def _text(value: Any) -> str | None:
    """``payload->>'key'``: text as is, anything else as its JSON."""
    if value is None or isinstance(value, str):
        return value
    return _json(value)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
