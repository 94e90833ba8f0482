"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flownb.store.base import forget_store, open_store


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    """A fresh DuckDB store file, closed (and unlocked) after the test."""
    path = str(tmp_path / "store.duckdb")
    yield path
    forget_store(open_store(path))


@pytest.fixture(autouse=True)
def _isolated_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test does may touch a real user's default store."""
    monkeypatch.setenv("FLOWNB_DB", str(tmp_path / "default.duckdb"))
