"""Fixtures of the browser tests: Chromium (installed when missing) and where screenshots go."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.browser.lab import ensure_chromium

ARTIFACTS = Path(__file__).parent / "artifacts"  # git-ignored


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; CI machines start without it, so install it with apt (we are root)."""
    try:
        return ensure_chromium()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"the browser tests need Chromium at /usr/bin/chromium: {exc}", pytrace=False)


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A directory for this test's screenshots, under tests/browser/artifacts/."""
    path = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):
        old.unlink()
    return path
