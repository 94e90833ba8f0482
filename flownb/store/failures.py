"""Every failure of the store file as one :class:`StoreError` line: the file, the cause, what to do.

DuckDB reports a full disk, a damaged file, a read-only file and a lock held by
another process in several exception classes (``IOException``, ``FatalException``,
plain ``Error``, ``TransactionException``...), and some as the error of the next
statement ("cannot rollback - no transaction is active" after a failed commit).
:func:`explain` maps them all, by class and by the OS's own words, to a handful of
stable causes; user SQL that DuckDB refuses is a ``query`` error.
"""

from __future__ import annotations

import errno
import re

from flownb.errors import FlownbError, StoreError

LOCK_PID = re.compile(r"\(PID (\d+)\)")

DISK_FULL = "disk full"
DAMAGED = "damaged"
READ_ONLY = "read-only"
MISSING = "missing"
QUERY = "query"
FAILED = "failed"

_TODO = {
    DISK_FULL: "free space on that disk (or move the store elsewhere with --db or FLOWNB_DB), then resume the run",
    DAMAGED: "move the file aside and restore it from a backup; flownb starts an empty store at that path",
    READ_ONLY: "it can still be read (history, sql, show); to run flows, make it writable or use another store "
    "with --db or FLOWNB_DB",
    MISSING: "fix the path given with --db, FLOWNB_DB or Flow(db=...), or create its directory first",
    QUERY: "fix the query; the tables are runs, steps, events, approvals and outputs",
    FAILED: "if it happens again, check the disk and the file",
}
_FULL = ("no space left on device", "disk is full", "not enough space", "out of disk space", "disk quota exceeded")
_DAMAGE = (
    "corrupt", "not a valid duckdb database", "checksum", "could not read enough bytes", "truncated",
    "invalid block", "serialization error", "failed to read", "malformed", "is damaged",
)  # fmt: skip
_READ_ONLY = ("read-only", "read only", "permission denied", "operation not permitted", "readonly")
_MISSING = ("no such file or directory", "not a directory", "is a directory", "cannot open file")
#: what DuckDB raises for SQL it refuses: the user's query, not the file, is at fault
_QUERY_CLASSES = (
    "ParserException", "BinderException", "CatalogException", "ConversionException", "InvalidInputException",
    "NotImplementedException", "OutOfRangeException", "TypeMismatchException", "SyntaxException",
    "DependencyException", "ConstraintException", "ProgrammingError",
)  # fmt: skip
_ERRNO = {errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EROFS: READ_ONLY, errno.EACCES: READ_ONLY,
          errno.EPERM: READ_ONLY, errno.ENOENT: MISSING, errno.ENOTDIR: MISSING, errno.EISDIR: MISSING}  # fmt: skip


def cause_of(exc: BaseException) -> str:
    """One of the stable causes for an exception DuckDB (or the OS) raised."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    text = str(exc).lower()
    # by the OS's words first: a full disk or a bad block fails any statement, whatever its class
    for cause, words in ((DISK_FULL, _FULL), (DAMAGED, _DAMAGE), (READ_ONLY, _READ_ONLY)):
        if any(w in text for w in words):
            return cause
    if type(exc).__name__ in _QUERY_CLASSES:
        return QUERY
    return MISSING if any(w in text for w in _MISSING) else FAILED


def explain(exc: BaseException, path: str, *, doing: str = "") -> BaseException:
    """``exc`` as a :class:`StoreError` (flownb's own errors pass through unchanged)."""
    if isinstance(exc, FlownbError):
        return exc
    cause = cause_of(exc)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    what = {
        DISK_FULL: "the disk is full",
        DAMAGED: "the file is damaged",
        READ_ONLY: "the file is read-only",
        MISSING: "the file cannot be opened",
        QUERY: "the query failed",
        FAILED: "DuckDB failed",
    }[cause]
    if doing:
        detail = f"{doing}: {detail}"
    return StoreError(path, cause, f"store {path}: {what} ({detail}); {_TODO[cause]}")


def error(path: str, cause: str, what: str, todo: str | None = None) -> StoreError:
    """A :class:`StoreError` flownb finds itself (a missing directory, a truncated file)."""
    return StoreError(path, cause, f"store {path}: {what}; {todo or _TODO.get(cause, _TODO[FAILED])}")


def lock_holder_pid(exc: BaseException) -> int | None:
    """The pid DuckDB names in a conflicting-lock error."""
    match = LOCK_PID.search(str(exc))
    return int(match.group(1)) if match else None


def is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "conflicting lock" in text or "could not set lock" in text


def is_invalidated(exc: BaseException) -> bool:
    """DuckDB closed the database after a fatal error: the connection must be opened again."""
    text = str(exc).lower()
    return "invalidated" in text or type(exc).__name__ == "FatalException"
