"""Fixtures for the step-kind tests: real local servers and flows on a fresh store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import flownb
from tests.servers import HttpServer, MessagesServer


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
