"""Pages of the ``runs`` view: filtered, newest first, with a cursor that never skips a run.

Runs are ordered by ``(started_at, run_id)`` descending; the cursor is the last
row's pair, so a page is the rows strictly after it in that order. A run started
while someone pages through lands before their cursor: it is never shown twice
and never shifts a later page (offsets would do both).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flownb.errors import FlownbError

if TYPE_CHECKING:
    from flownb.store.base import Store

MAX_LIMIT = 500


class BadCursor(FlownbError):
    """A ``cursor`` this module did not make."""


@dataclass(frozen=True, slots=True)
class RunFilter:
    flow: str | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    """Runs started at or after this time."""
    until: datetime | None = None
    """Runs started before this time."""


def list_runs(
    store: Store, where: RunFilter, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of runs as JSON-able dicts, and the cursor of the next page (None on the last)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    clauses: list[str] = []
    args: list[Any] = []
    if where.flow is not None:
        clauses.append("flow = ?")
        args.append(where.flow)
    if where.statuses:
        clauses.append("status IN (SELECT unnest(?))")
        args.append(list(where.statuses))
    if where.since is not None:
        clauses.append("started_at >= ?")
        args.append(where.since)
    if where.until is not None:
        clauses.append("started_at < ?")
        args.append(where.until)
    if cursor is not None:
        at_us, run_id = decode_cursor(cursor)
        clauses.append("(epoch_us(started_at) < ? OR (epoch_us(started_at) = ? AND run_id < ?))")
        args += [at_us, at_us, run_id]
    sql = "SELECT *, epoch_us(started_at) AS _at FROM runs"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY started_at DESC, run_id DESC LIMIT ?"
    args.append(limit + 1)
    store.flush()
    df = store.query(sql, args)
    rows = [_plain({str(k): v for k, v in r.items()}) for r in df.to_dict(orient="records")]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(int(rows[-1]["_at"]), str(rows[-1]["run_id"]))
    for r in rows:
        r.pop("_at", None)
    return rows, next_cursor


def encode_cursor(at_us: int, run_id: str) -> str:
    raw = json.dumps([at_us, run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_us, run_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadCursor(f"cursor {cursor[:40]!r} is not one this server gave; start again without it") from None
    if not isinstance(at_us, int) or not isinstance(run_id, str):
        raise BadCursor(f"cursor {cursor[:40]!r} is not one this server gave; start again without it")
    return at_us, run_id


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON: timestamps as ISO 8601 in UTC, NULLs as None, JSON columns parsed."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if _missing(value):
            out[key] = None
        elif isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat()
        elif hasattr(value, "isoformat") and hasattr(value, "to_pydatetime"):  # a pandas Timestamp
            out[key] = value.to_pydatetime().astimezone(UTC).isoformat()
        elif key == "params" and isinstance(value, str):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        elif hasattr(value, "item"):  # a numpy scalar
            out[key] = value.item()
        else:
            out[key] = value
    return out


def _missing(value: Any) -> bool:
    """NULL as pandas gives it: None, NaN or NaT (each unequal to itself)."""
    try:
        return value is None or bool(value != value)  # noqa: PLR0124
    except (TypeError, ValueError):
        return False
