"""Time as the engine sees it, injectable: retries, approval polls and records read this clock.

Tests (yours too) can run a flow with retry delays of minutes in no time by
giving the runtime a clock whose ``sleep`` only moves its own time forward.
"""

from __future__ import annotations

import asyncio
import time as _time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch: when things happened, as records say."""
        ...

    def perf(self) -> float:
        """A monotonic counter for durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait (a retry's backoff, a poll's interval)."""
        ...


class SystemClock:
    """The real clock."""

    time = staticmethod(_time.time)
    perf = staticmethod(_time.perf_counter)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when something sleeps on it: for tests of long waits."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def perf(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


SYSTEM = SystemClock()
