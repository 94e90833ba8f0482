"""Value codecs: JSON for plain data, Arrow for tables, pickle for the rest.

Small JSON values travel inline in the ``output`` event; larger values go to
the ``_values`` table as bytes; pandas and Arrow tables become real DuckDB
tables that users can ``SELECT`` from.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
from dataclasses import dataclass
from typing import Any

import orjson

from flownb.errors import OutputNotStorable

INLINE_LIMIT = 64 * 1024
_PLAIN_SCALARS = (str, int, bool, type(None))


@dataclass(frozen=True)
class Encoded:
    codec: str
    size_bytes: int
    hash: str
    inline: Any = None
    """The value itself, for small JSON values (kept in the event payload)."""
    blob: bytes | None = None
    table: Any = None
    """A ``pyarrow.Table`` for table codecs."""


def encode(value: Any, *, step: str = "?") -> Encoded:
    """Encode a step's output, or raise OutputNotStorable naming the step."""
    if value is None:  # most steps that only have effects: their encoding never changes
        return _NONE
    data = _plain_json(value)
    if data is not None:
        h = _hash(data)
        if len(data) <= INLINE_LIMIT:
            return Encoded("json", len(data), h, inline=value)
        return Encoded("json", len(data), h, blob=data)
    table = _as_arrow(value)
    if table is not None:
        codec, arrow = table
        sink = io.BytesIO()
        import pyarrow as pa

        with pa.ipc.new_stream(sink, arrow.schema) as writer:
            writer.write_table(arrow)
        data = sink.getvalue()
        return Encoded(codec, len(data), _hash(data), table=arrow)
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001  (any pickling failure means: not storable)
        raise OutputNotStorable(
            f"step {step!r} returned a {type(value).__name__} that cannot be stored "
            f"({type(exc).__name__}: {exc}); return plain data, a DataFrame, or a picklable object",
            step=step,
        ) from None
    return Encoded("pickle", len(data), _hash(data), blob=data)


def decode(codec: str, *, inline: Any = None, blob: bytes | None = None, table: Any = None) -> Any:
    if codec == "json":
        return inline if blob is None else json.loads(blob)
    if codec == "pickle":
        if blob is None:
            raise ValueError("a pickled value without its bytes")
        return pickle.loads(blob)  # noqa: S301  (written by this store, never user input)
    if codec == "arrow:pandas":
        return table.to_pandas()
    if codec == "arrow":
        return table
    raise ValueError(f"unknown codec {codec!r}")


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


def _as_arrow(value: Any) -> tuple[str, Any] | None:
    mod = type(value).__module__
    if mod.startswith("pandas") and type(value).__name__ == "DataFrame":
        import pyarrow as pa

        try:
            return "arrow:pandas", pa.Table.from_pandas(value)
        except (pa.ArrowException, TypeError, ValueError):
            return None  # mixed-type columns: pickle keeps them exactly
    if mod.startswith("pyarrow") and type(value).__name__ == "Table":
        return "arrow", value
    return None


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


_NONE = Encoded("json", 4, _hash(b"null"), inline=None)
