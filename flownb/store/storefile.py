"""The store's file during this process's turns: where it may be, opening it, noticing damage.

Kept here:

* **No surprise directories.** A store's directory must exist; only the default
  ``.flownb/`` is made. A mistyped ``--db`` is a one-line error, never a new directory.
* **Turns** (turns.py): the file is open only while this process has its turn; a
  holder outside the turns (another program) is waited for with backoff. Either way,
  no turn within the wait is a :class:`~flownb.errors.StoreLocked` naming the holder.
* **Read-only files** (not writable by this process, or in a directory it may not
  write: DuckDB writes a ``.wal`` beside the file) are opened read-only.
* **Damage.** Nobody else may write the file during this process's turn, and DuckDB
  shrinks it only inside our own calls: a file shorter than after our last operation
  was truncated (or removed) by someone else. Damage is remembered; every later use
  fails with it. During a turn the size is read with ``fstat`` on a descriptor held
  for the turn (two reads a commit; right after a commit's ``fdatasync`` an ``fstat``
  took 10 to 20 µs here, a path ``stat`` 16 to 36), which also tells a removed file
  (no links left) from another file moved to its path.
* **One DuckDB thread for writes, all of them for reads over history.** A commit is
  one small statement: DuckDB's worker threads only wake up for it and spin (with
  them, a chain's step took 10% longer and 12% more CPU here, DuckDB 2.0.1 on 2
  cores). The file is opened with ``threads = 1``; a read over the whole history
  (:meth:`all_cores`: users' SQL, the views) gets DuckDB's own count back for its
  length, which halves a scan of millions of events on 2 cores. ``threads`` belongs
  to the DuckDB instance: another connection this process has to the same file
  while the store holds it shares it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from flownb.errors import StoreError, StoreLocked
from flownb.store import failures
from flownb.store.base import DEFAULT_DB
from flownb.store.turns import Turns, TurnTimeout


class StoreFile:
    """One process's access to one store file (its store's writer thread's alone)."""

    def __init__(self, path: str, lock_timeout: float) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        check_location(path)
        self.read_only = _read_only(path)
        self.con: duckdb.DuckDBPyConnection | None = None
        self.damage: StoreError | None = None
        self.turns = Turns(path)
        #: seconds each turn with the file was waited for (benchmarks/contention.py reads them)
        self.waits: list[float] = []
        self._size_seen: int | None = None
        #: a read-only descriptor of the file, held for the turn (its size is read through it)
        self._fd: int | None = None
        #: the file's size when this process last let go of it (None before its first turn ends)
        self._size_left: int | None = None
        #: DuckDB's own thread count (the machine's cores), read at the first turn
        self._cores = 0

    def open(
        self, about: dict[str, Any], ready: Callable[[duckdb.DuckDBPyConnection], None], wait: float | None = None
    ) -> duckdb.DuckDBPyConnection:
        """The connection of this turn: waits for the turn (``StoreLocked`` after ``wait``,
        default ``lock_timeout``), opens the file and calls ``ready`` with it first."""
        if self.con is not None:
            return self.con
        if self.damage is not None:
            raise self.damage
        deadline = time.monotonic() + (self.lock_timeout if wait is None else wait)
        try:
            waited = self.turns.acquire(deadline, about)
        except TurnTimeout as timeout:
            h = timeout.holder
            pid, host, doing = h.get("pid"), h.get("host"), h.get("doing")
            raise StoreLocked(self.path, pid, timeout.waited, host=host, doing=doing) from None
        if len(self.waits) < 100_000:
            self.waits.append(waited)
        try:
            self._check_between_turns()
            con = self._connect(deadline)
            try:
                self._one_thread(con)
                ready(con)
            except BaseException as exc:
                con.close()
                if isinstance(exc, duckdb.Error):  # the first reads of the file: damage shows here
                    raise self.failure(exc, doing="opening it") from None
                raise
        except BaseException:
            self.turns.release()
            raise
        self.con = con
        with contextlib.suppress(OSError):  # without it, the size is read by path
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self.note_size()
        return con

    def _connect(self, deadline: float) -> duckdb.DuckDBPyConnection:
        started = time.monotonic()
        delay = 0.02
        while True:
            try:
                return duckdb.connect(self.path, read_only=self.read_only)
            except duckdb.Error as exc:
                if failures.is_lock_conflict(exc):  # a holder that does not take turns
                    now = time.monotonic()
                    if now >= deadline:
                        raise StoreLocked(
                            self.path, failures.lock_holder_pid(exc), now - started,
                            doing="holding it outside flownb's turns (another program, or an older flownb)",
                        ) from None  # fmt: skip
                    time.sleep(min(delay, max(0.0, deadline - now)))
                    delay = min(delay * 1.5, 0.5)
                    continue
                if not self.read_only and failures.cause_of(exc) == failures.READ_ONLY and os.path.exists(self.path):
                    self.read_only = True  # still readable: open it for reading only
                    continue
                raise self.failure(exc, doing="opening it") from None

    def _one_thread(self, con: duckdb.DuckDBPyConnection) -> None:
        """Writes run on the calling thread alone (see the module's docstring)."""
        if not self._cores:
            row = con.execute("SELECT current_setting('threads')").fetchone()
            self._cores = int(row[0]) if row else 1
        if self._cores > 1:
            con.execute("SET threads = 1")

    @contextlib.contextmanager
    def all_cores(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """DuckDB's worker threads for the length of a read over the history (about 1 ms
        to start and stop them), then one thread again for the writes."""
        if self._cores <= 1:
            yield
            return
        con.execute(f"SET threads = {self._cores}")
        try:
            yield
        finally:
            with contextlib.suppress(duckdb.Error):  # a failed read was reported already
                con.execute("SET threads = 1")

    def close(self) -> None:
        """End this turn: close the file (DuckDB checkpoints) and let the next process have it."""
        if self.con is not None:
            self._notice_shrink()  # before DuckDB's checkpoint writes past the cut and hides it
            con, self.con = self.con, None
            try:
                with contextlib.suppress(duckdb.Error):  # a failure was reported already
                    con.close()
                if self.damage is None:
                    self._size_left = _size(self.path)
                    if self._size_left >= 0:
                        self.turns.leave_size(self._size_left)
            finally:
                self._size_seen = None
                self._forget_fd()
                self.turns.release()

    def shut(self) -> None:
        self.close()
        self.turns.close()

    def failure(self, exc: BaseException, *, doing: str = "") -> BaseException:
        """``exc`` as the caller hears it; damage is remembered, and a database DuckDB gave
        up on ("invalidated") is closed: the next turn opens it again."""
        error = failures.explain(exc, self.path, doing=doing)
        if isinstance(error, StoreError) and error.cause == failures.DAMAGED:
            self.damage = self.damage or error
        if failures.is_invalidated(exc) or self.damage is not None:
            self.close()
        return error

    def note_size(self) -> None:
        if self.con is not None:
            size = self._current_size()
            self._size_seen = size if size >= 0 else None

    def _current_size(self) -> int:
        """The file's size during this turn, -1 when it was removed."""
        if self._fd is None:
            return _size(self.path)
        try:
            st = os.fstat(self._fd)
        except OSError:
            return -1
        return st.st_size if st.st_nlink > 0 else -1

    def _forget_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _check_between_turns(self) -> None:
        """A file this process had, found smaller than its last holder left it: someone who takes
        no turns cut it between turns (within a turn, :meth:`check_intact` sees it)."""
        if self._size_left is None or self.read_only:
            return  # a first turn: whatever happened before this process is DuckDB's to find
        left = self.turns.size_left()
        expected = self._size_left if left is None else left
        size = _size(self.path)
        if 0 <= size < expected:  # (a file removed is a new store: the user starting afresh)
            raise self._damaged(f"shrank from {expected} to {size} bytes", "between this process's turns")

    def check_intact(self) -> None:
        """The file has not shrunk since this process's last operation in this turn."""
        if self.damage is None:
            self._notice_shrink()
        if self.damage is not None:
            self.close()
            raise self.damage

    def _notice_shrink(self) -> None:
        seen = self._size_seen
        if seen is None or self.damage is not None:
            return
        size = self._current_size()
        if size < seen:
            what = "was removed" if size < 0 else f"shrank from {seen} to {size} bytes"
            self._damaged(what, "while this process had it open")

    def _damaged(self, what: str, when: str) -> StoreError:
        """Remember the damage: every later operation fails with it."""
        self.damage = failures.error(
            self.path, failures.DAMAGED,
            f"the file is damaged: it {what} {when} (truncated by another program?); records written since may be lost",
        )  # fmt: skip
        return self.damage

    def read_only_error(self) -> StoreError:
        return failures.error(
            self.path, failures.READ_ONLY,
            "the file is read-only: it can be read (history, sql, show), not written",
            "make it writable, or run flows with another store (--db, FLOWNB_DB or Flow(db=...))",
        )  # fmt: skip


def _size(path: str) -> int:
    """The file's size, -1 when it is gone."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def check_location(path: str) -> None:
    """The store's directory exists; only the default ``.flownb/`` is made."""
    p = Path(path)
    if p.is_dir():
        raise failures.error(
            path, failures.MISSING, "that path is a directory, not a store file",
            f"give the path of a file, for example {p / 'flownb.duckdb'}",
        )  # fmt: skip
    parent = p.parent
    if parent.is_dir():
        return
    if parent == Path(DEFAULT_DB).parent.resolve():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise failures.explain(exc, path, doing=f"creating {parent}") from None
        return
    what = f"{parent} is not a directory" if parent.exists() else f"the directory {parent} does not exist"
    raise failures.error(path, failures.MISSING, what)


def _read_only(path: str) -> bool:
    """A file this process may not write, or in a directory it may not write. A missing file
    is created (not read-only)."""
    if not os.path.exists(path):
        return False
    return not (os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK))
