"""Value codecs: each value stored by the cheapest codec that gives it back exactly.

=================  ============================================================
``json``           plain data JSON keeps exactly (no tuples, NaN or int keys);
                   small values travel inline in the ``output`` event
``arrow:pandas``   a DataFrame or Series whose Arrow form gives it back exactly
                   (index, dtypes, categoricals, time zones, ``attrs``: see
                   :mod:`flownb.store.frames`); kept as an Arrow IPC stream, and
                   also as a real DuckDB table users can ``SELECT`` from
``arrow``          a ``pyarrow.Table``, the same way
``module``         a module, by its import name (``matplotlib.pyplot``)
``cloudpickle``    everything else, functions, lambdas and classes defined in
                   notebook cells by value; their code keeps its file name, so a
                   traceback through a restored function still shows ``<step NAME>``
``volatile``       a value no codec can store (a generator, an open file, a lock,
                   a live connection): kept in memory only, ``reason`` says why;
                   its hash is unique, so it never matches a cache lookup
=================  ============================================================

Records written with ``pickle`` (before cloudpickle) still decode. ``encode``
never raises for a value it cannot store: the value becomes volatile.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import marshal
import math
import pickle
import sys
import types
import uuid
from collections import ChainMap
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from flownb.errors import FlownbError

INLINE_LIMIT = 64 * 1024
_PLAIN_SCALARS = (str, int, bool, type(None))
VOLATILE = "volatile"
TABLE_CODECS = ("arrow:pandas", "arrow")


@dataclass(frozen=True)
class Encoded:
    codec: str
    size_bytes: int
    hash: str
    inline: Any = None
    """The value itself, for small JSON values (kept in the event payload)."""
    blob: bytes | None = None
    table: Any = None
    """A ``pyarrow.Table`` for users' SQL (table codecs; ``None`` when DuckDB cannot hold it)."""
    reason: str | None = None
    """Why a volatile value could not be stored."""


def encode(value: Any, *, step: str = "?") -> Encoded:
    """Encode a step's output exactly; a value no codec can store comes back volatile."""
    if value is None:  # most steps that only have effects: their encoding never changes
        return _NONE
    data = _plain_json(value)
    if data is not None:
        if len(data) <= INLINE_LIMIT:
            return Encoded("json", len(data), _hash(data), inline=value)
        return Encoded("json", len(data), _hash(data), blob=data)
    return _by_kind(value) or _pickled(value)


def _by_kind(value: Any) -> Encoded | None:
    """A module by name, a table as Arrow; ``None`` for anything else."""
    if isinstance(value, types.ModuleType):
        name = _import_name(value)
        return None if name is None else Encoded("module", len(name), _hash(name.encode()), inline=name)
    table = _as_arrow(value)
    if table is None:
        return None
    codec, arrow, data = table
    # DuckDB cannot make a table with no columns; the stream alone keeps it
    return Encoded(codec, len(data), _hash(data), blob=data, table=arrow if arrow.num_columns else None)


def _pickled(value: Any) -> Encoded:
    try:
        data = dumps(value)
    except Exception as exc:  # noqa: BLE001  (any pickling failure means: keep it in memory only)
        return volatile(f"{type(exc).__name__}: {exc}")
    return Encoded("cloudpickle", len(data), _hash(data), blob=data)


def volatile(reason: str) -> Encoded:
    """The record of a value kept in memory only; its hash matches nothing else."""
    return Encoded(VOLATILE, 0, uuid.uuid4().hex[:16], reason=reason)


def decode(codec: str, *, inline: Any = None, blob: bytes | None = None, table: Any = None) -> Any:
    """The value ``encode`` was given. ``table`` is the DuckDB copy of a table
    value, read only for records that have no Arrow stream (written before it)."""
    if codec == "json":
        return inline if blob is None else json.loads(blob)
    if codec in ("cloudpickle", "pickle"):
        if blob is None:
            raise ValueError("a pickled value without its bytes")
        return pickle.loads(blob)  # noqa: S301  (written by this store, never user input)
    if codec in TABLE_CODECS:
        from flownb.store import frames

        if blob is not None:
            table = frames.read_ipc(blob)
        return table if codec == "arrow" else frames.to_pandas(table)
    if codec == "module":
        return importlib.import_module(inline)
    if codec == VOLATILE:
        raise FlownbError("this value was not stored (a volatile output); run its step again to get it")
    raise ValueError(f"unknown codec {codec!r}")


# -- pickling ------------------------------------------------------------------------


def _code_reduce(code: types.CodeType) -> tuple[Any, tuple[bytes]]:
    # cloudpickle writes "<dynamic-code>" as the file name of code it pickles by value;
    # marshal keeps the whole code object as compiled, so tracebacks still name the cell
    return marshal.loads, (marshal.dumps(code),)


def _file_reduce(file: Any) -> Any:
    # cloudpickle would store a file open for reading as a copy of its text: a
    # different object, not the open file; like any live resource it stays in memory
    raise TypeError(f"cannot pickle an open file ({getattr(file, 'name', '?')!r})")


try:
    import cloudpickle  # type: ignore[import-untyped]

    class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
            {types.CodeType: _code_reduce, io.TextIOWrapper: _file_reduce}, cloudpickle.Pickler.dispatch_table
        )

    def dumps(value: Any) -> bytes:
        """Pickle by value what another process could not import (``__main__``, cells)."""
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        return buffer.getvalue()

except ImportError:  # pragma: no cover  (a declared dependency; dask brings it too)

    def dumps(value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


# -- helpers ---------------------------------------------------------------------------


def _import_name(module: types.ModuleType) -> str | None:
    """The name that imports this very module in another process, if there is one."""
    name = getattr(module, "__name__", None)
    if not isinstance(name, str) or name == "__main__" or sys.modules.get(name) is not module:
        return None
    return name if getattr(module, "__spec__", None) is not None else None


def _plain_json(value: Any) -> bytes | None:
    """The JSON of a value JSON keeps exactly, or None (orjson refuses ints past 64 bits)."""
    if not _is_plain(value):
        return None
    try:
        return orjson.dumps(value)
    except TypeError:
        return None


def _is_plain(value: Any, depth: int = 0) -> bool:
    """True for values JSON keeps exactly (no tuples, no NaN, string keys)."""
    if depth > 100:
        return False
    if isinstance(value, _PLAIN_SCALARS):
        return type(value) in (str, int, bool, type(None))
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _as_arrow(value: Any) -> tuple[str, Any, bytes] | None:
    """A table's codec, its Arrow table and stream; ``None`` when Arrow is not exact for it."""
    mod = type(value).__module__
    if mod.startswith("pandas") and type(value).__name__ in ("DataFrame", "Series"):
        import pandas as pd

        if type(value) not in (pd.DataFrame, pd.Series):
            return None  # a subclass: only pickling keeps its class
        from flownb.store.frames import to_arrow

        converted = to_arrow(value)
        return None if converted is None else ("arrow:pandas", *converted)
    if mod.startswith("pyarrow") and type(value).__name__ == "Table":
        from flownb.store.frames import ipc

        return "arrow", value, ipc(value)
    return None


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


_NONE = Encoded("json", 4, _hash(b"null"), inline=None)
