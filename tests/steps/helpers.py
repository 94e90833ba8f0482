"""What the step-kind tests read back from a run: its attempts, events and recorded inputs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any


def wait_until(check: Callable[[], Any], what: str, limit: float = 20.0) -> Any:
    """Poll until ``check()`` is truthy; a generous bound so a hang fails, not a slow machine."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def attempts(run: Any, step: str) -> list[dict[str, Any]]:
    """The steps-view rows of one step, in attempt order."""
    df = run.steps
    rows = df[df["step"] == step].sort_values("attempt")
    rows = rows.astype(object).where(rows.notna(), None)  # NaN -> None
    return list(rows.to_dict("records"))


def events(run: Any, event: str, step: str | None = None) -> list[dict[str, Any]]:
    """Payloads of a run's events of one type (and step), in order."""
    store = run.execution.store
    store.flush()
    sql = "SELECT step, payload FROM events WHERE run_id = ? AND event = ?"
    args: list[Any] = [run.id, event]
    if step is not None:
        sql += " AND step = ?"
        args.append(step)
    df = store.query(sql + " ORDER BY seq", args)
    return [json.loads(p) if isinstance(p, str) else p for p in df["payload"]]


def recorded_inputs(run: Any, step: str) -> list[dict[str, Any]]:
    return [p.get("inputs") for p in events(run, "step_finished", step)]
