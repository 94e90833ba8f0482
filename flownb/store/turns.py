"""Processes take turns with the store file: a waiting writer gets it within seconds.

DuckDB lets one process at a time open a file for writing, and a process that
finds it taken can only try again: it never learns when the holder lets go, and
a process that reconnects every 0.2 s (a dashboard polling ``runs``) wins that race
nearly every time. So flownb's processes agree, beside the store, on whose turn it
is, with two POSIX record locks on ``<store>.lock``:

* the **turn** (byte 0): held by the process that has the DuckDB file open;
* the **door** (byte 1): held by the one process waiting next for the turn.

A process takes the door, then the turn, then lets go of the door. The holder of
the turn sees that someone waits (the door is taken) and, after a quantum of
``QUANTUM`` seconds with the file, closes it and lets go of the turn; the process
at the door, the only one waiting for the turn, gets it next (it never loses that
race to the process that let go, which must pass the door first). A process
that runs no flow lets go right after each query (see the store). The kernel
drops a dead process's locks, so a crash never leaves the file taken.

The holder writes who it is and what it does into the lock file, so that a
:class:`~flownb.errors.StoreLocked` can name it, and, as it lets go, how large it
left the store file: a file found smaller at the next turn was cut by someone who
takes no turns (the store calls that damage). Where the lock file cannot be
written (a read-only directory), there are no turns: nobody can write there anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from typing import Any

#: how long a holder keeps the file while another process waits (a connect costs ~15 ms)
QUANTUM = 0.2
_TURN, _DOOR = 0, 1
_LEFT_AT, _LEFT_SIZE = 16, 24
_INFO_AT, _INFO_SIZE = 64, 448
_POLL_FIRST, _POLL_MAX = 0.001, 0.02
#: how often, at most, a holder past its quantum looks at the door (a chain commits every few ms)
_DOOR_LOOK = 0.01


class TurnTimeout(Exception):
    def __init__(self, holder: dict[str, Any] | None, waited: float) -> None:
        self.holder = holder or {}
        self.waited = waited
        super().__init__(f"no turn after {waited:.1f}s")


class Turns:
    """The turn-taking of one process for one store file (its writer thread's only)."""

    def __init__(self, store_path: str) -> None:
        self.path = store_path + ".lock"
        self._fd: int | None = None
        self._tried = False
        self.holding = False
        self.since = 0.0
        """When this process got its turn (``time.monotonic``)."""
        self._looked = 0.0

    def _open(self) -> bool:
        if self._fd is None and not self._tried:
            self._tried = True
            with contextlib.suppress(OSError):  # a read-only directory: no turns (nobody writes there)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        return self._fd is not None

    def acquire(self, deadline: float, info: dict[str, Any]) -> float:
        """Wait at the door, then for the turn; seconds waited. ``TurnTimeout`` at ``deadline``."""
        if self.holding or not self._open():
            return 0.0
        started = time.monotonic()
        self._wait_for(_DOOR, deadline, started)
        try:
            self._wait_for(_TURN, deadline, started)
        finally:
            self._unlock(_DOOR)
        self.holding = True
        self.since = time.monotonic()
        self.describe(info)
        return self.since - started

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self._unlock(_TURN)

    def someone_waiting(self) -> bool:
        """Whether another process waits at the door (a test of the lock, taken and given back)."""
        if not self.holding or self._fd is None:
            return False
        if self._try(_DOOR):
            self._unlock(_DOOR)
            return False
        return True

    def yield_due(self) -> bool:
        """Held for a quantum while someone waits: time to let go. The door is looked at
        once in ``_DOOR_LOOK`` seconds at most: a waiter gets the turn that much later at
        worst, and a chain's commits (a few ms apart) do not each cost two lock calls."""
        if not self.holding:
            return False
        now = time.monotonic()
        if now - self.since < QUANTUM or now - self._looked < _DOOR_LOOK:
            return False
        self._looked = now
        return self.someone_waiting()

    def holder(self) -> dict[str, Any] | None:
        """What the holder of the turn wrote about itself (best effort: it may be changing)."""
        if self._fd is None:
            return None
        try:
            raw = os.pread(self._fd, _INFO_SIZE, _INFO_AT).strip(b"\0 \n")
            found = json.loads(raw) if raw else None
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def leave_size(self, size: int) -> None:
        """Say, as the holder letting go, how large the store file is as left."""
        if self.holding and self._fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._fd, str(size).encode().ljust(_LEFT_SIZE), _LEFT_AT)

    def size_left(self) -> int | None:
        """How large the last holder left the store file (None when nobody said)."""
        if self._fd is None:
            return None
        try:
            raw = os.pread(self._fd, _LEFT_SIZE, _LEFT_AT).strip(b"\0 ")
            return int(raw) if raw else None
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    # -- locks ----------------------------------------------------------------

    def _wait_for(self, byte: int, deadline: float, started: float) -> None:
        delay = _POLL_FIRST
        while not self._try(byte):
            now = time.monotonic()
            if now >= deadline:
                raise TurnTimeout(self.holder(), now - started)
            time.sleep(min(delay, max(deadline - now, 0.0)))
            delay = min(delay * 1.5, _POLL_MAX)

    def _try(self, byte: int) -> bool:
        assert self._fd is not None
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
        except OSError:
            return False
        return True

    def _unlock(self, byte: int) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, byte)

    def describe(self, info: dict[str, Any]) -> None:
        """Say who holds the turn and what it does (again, when that changes during the turn)."""
        if not self.holding or self._fd is None:
            return
        data = json.dumps(info, default=str).encode()[:_INFO_SIZE].ljust(_INFO_SIZE)
        with contextlib.suppress(OSError):  # the name of the holder is a courtesy, never a failure
            os.pwrite(self._fd, data, _INFO_AT)
