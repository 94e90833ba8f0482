"""Fixtures for the step-kind tests: real local servers and flows on a fresh store."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests.servers` without a tests/__init__.py
    sys.path.insert(0, str(ROOT))

import flownb  # noqa: E402
from tests.servers import HttpServer, MessagesServer  # noqa: E402


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


@pytest.fixture
def messages_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MessagesServer]:
    """A Messages API server the real SDK talks to (through ANTHROPIC_BASE_URL)."""
    with MessagesServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-not-secret")
        monkeypatch.setenv("FLOWNB_MODEL", "claude-sonnet-test")
        yield server


@pytest.fixture
def flow(tmp_path: Path) -> flownb.Flow:
    """A flow on its own DuckDB file (each test sees only its own records)."""
    return flownb.Flow(f"t_{uuid.uuid4().hex[:8]}", db=str(tmp_path / "store.duckdb"))


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
