"""Stable hashes of step code and of values, used by resume and caching."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any


def digest(*parts: str | bytes) -> str:
    """The first 16 hex digits of SHA-256 over the parts, each followed by a NUL."""
    if parts and all(isinstance(part, str) for part in parts):  # one update: the same hash, faster
        return hashlib.sha256(("\0".join(parts) + "\0").encode()).hexdigest()[:16]  # type: ignore[arg-type]
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def code_hash(fn: Callable[..., Any] | None, kind: str, options: dict[str, Any]) -> str:
    """A hash that changes when the step's code or options change.

    Resume re-runs a step (and everything downstream) when this differs from
    the hash recorded by its committed success.
    """
    source = ""
    if fn is not None:
        source = getattr(fn, "__flownb_source__", "") or _source_of(fn)
    return digest(kind, source, json.dumps(options, sort_keys=True, default=repr))


def _source_of(fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return repr(code.co_code) if code is not None else repr(fn)
