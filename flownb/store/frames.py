"""Exact round trips of pandas tables through Arrow.

``to_arrow`` gives the Arrow table of a DataFrame or Series only when
``to_pandas`` of that table gives the value back exactly: the same index
(named, MultiIndex, RangeIndex with its step, a DatetimeIndex's ``freq``),
columns (int labels, a RangeIndex of labels), dtypes (categoricals with their
categories and order, time zones, nullable ``Int64``/``boolean``/``string``,
``object``), values and ``attrs``. Arrow's own pandas metadata carries most of
that; what it does not is kept under the schema's ``flownb`` metadata key and
put back by :func:`to_pandas`.

Everything else (mixed-type ``object`` columns, ``None`` beside ``NaN``, duplicate
labels, ``attrs`` that JSON cannot hold...) gets ``None``, and the caller stores
the value another way: a frame is never stored inexactly. The guarantee rests
on a check of the decoded frame against the original, kept cheap for big
frames (see :func:`_verified`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FLOWNB_KEY = b"flownb"
#: frames up to this many cells are decoded in full and compared with the original
FULL_CHECK_CELLS = 200_000
#: bigger ones: the structure is checked on this many first rows (see _verified)
PROBE_ROWS = 200


def to_arrow(value: Any) -> tuple[pa.Table, bytes] | None:
    """The Arrow table and IPC stream whose :func:`to_pandas` is exactly ``value``, or ``None``."""
    import pandas as pd

    if value.attrs and not _json_exact(value.attrs):
        return None  # pyarrow would drop them with a warning
    try:
        table = _convert(value)
        data = ipc(table)
    except Exception:  # noqa: BLE001  (Arrow refuses many frames, each its own way: store them otherwise)
        return None
    series = isinstance(value, pd.Series)
    try:
        # what is checked is what resume will read: the stream, not the table in memory
        return (table, data) if _verified(value, read_ipc(data), series=series) else None
    except Exception:  # noqa: BLE001  (a comparison that cannot even be made is no proof)
        return None


def ipc(table: pa.Table) -> bytes:
    """An Arrow IPC stream of ``table``, uncompressed (written and read at memory speed)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        if table.num_rows:
            writer.write_table(table)
        else:
            # a table without rows has no batches, and a stream without batches loses
            # the dictionaries (a categorical's categories): write one empty batch
            columns = [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in table.columns]
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=table.schema))
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def read_ipc(data: bytes) -> pa.Table:
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all()


def to_pandas(table: pa.Table) -> Any:
    """The DataFrame (or Series) that :func:`to_arrow` made ``table`` from."""
    import pandas as pd

    frame = table.to_pandas()
    metadata = table.schema.metadata or {}
    extra: dict[str, Any] = json.loads(metadata.get(FLOWNB_KEY, b"{}"))
    if "columns_range" in extra:
        start, stop, step = extra["columns_range"]
        labels = pd.RangeIndex(start, stop, step, name=frame.columns.name)
        if len(labels) == len(frame.columns):
            frame.columns = labels
    # object data as Python objects again (to_pandas makes strings ``str``, nulls NaN,
    # lists arrays); the data columns come first in the table, in the frame's order
    for i in extra.get("object_columns", ()):
        frame.isetitem(i, pd.Series(table.column(i).to_pylist(), index=frame.index, dtype=object))
    if extra.get("object_index"):
        field = json.loads(metadata[b"pandas"])["index_columns"][0]
        frame.index = pd.Index(table.column(field).to_pylist(), dtype=object, name=frame.index.name)
    if "freq" in extra:
        frame.index = type(frame.index)(frame.index, freq=extra["freq"])
    if "range_rows" in extra:  # no columns: Arrow keeps no rows either
        start, stop, step, name = extra["range_rows"]
        restored = pd.DataFrame(index=pd.RangeIndex(start, stop, step, name=name), columns=frame.columns)
        restored.attrs = frame.attrs
        frame = restored
    if "series" in extra:
        series = frame.iloc[:, 0]
        if extra["series"].get("unnamed"):
            series.name = None
        series.attrs = dict(frame.attrs)
        return series
    return frame


def _convert(value: Any) -> pa.Table:
    import pandas as pd
    import pyarrow as pa

    extra: dict[str, Any] = {}
    if isinstance(value, pd.Series):
        extra["series"] = {"unnamed": value.name is None}
        frame = value.to_frame()
    else:
        frame = value
    table = pa.Table.from_pandas(frame)
    # what Arrow's pandas metadata does not keep
    columns = frame.columns
    if not len(columns) and isinstance(frame.index, pd.RangeIndex) and len(frame.index):
        extra["range_rows"] = [frame.index.start, frame.index.stop, frame.index.step, frame.index.name]
    if isinstance(columns, pd.RangeIndex):
        extra["columns_range"] = [columns.start, columns.stop, columns.step]
    objects = [i for i, dtype in enumerate(frame.dtypes) if _is_object(dtype)]
    if objects:
        extra["object_columns"] = objects
    index = frame.index
    if not isinstance(index, pd.MultiIndex) and _is_object(index.dtype):
        extra["object_index"] = True
    freq = getattr(index, "freqstr", None)
    if freq is not None and not isinstance(index, pd.PeriodIndex):  # a PeriodIndex keeps its own
        extra["freq"] = freq
    if extra:
        metadata = dict(table.schema.metadata or {})
        metadata[FLOWNB_KEY] = json.dumps(extra).encode()
        table = table.replace_schema_metadata(metadata)
    return table


def _verified(value: Any, table: pa.Table, *, series: bool) -> bool:
    """Whether ``to_pandas(table)`` is exactly ``value``.

    A frame of up to ``FULL_CHECK_CELLS`` cells, or with ``object`` data, is
    decoded and compared whole. For a bigger typed frame the check is made on
    its first ``PROBE_ROWS`` rows, converted the same way, and the full table
    must have the probe's Arrow schema: what Arrow changes in a typed column
    (a dtype, a time zone, categories, index kind, labels, attrs) is the same
    for every row, and a typed column's values are carried bit for bit.
    ``object`` columns are the exception (each cell is converted on its own,
    ``None`` and ``NaN`` alike become null), hence they are always checked whole.
    """
    frame = value.to_frame() if series else value
    has_objects = any(_is_object(dtype) for dtype in frame.dtypes) or _object_index(frame.index)
    if frame.size <= FULL_CHECK_CELLS or has_objects:
        return _same(value, to_pandas(table), series=series)
    probe = value.iloc[:PROBE_ROWS]
    probe_table = _convert(probe)
    if not probe_table.schema.remove_metadata().equals(table.schema.remove_metadata()):
        return False
    return _same(probe, to_pandas(probe_table), series=series)


def _same(a: Any, b: Any, *, series: bool) -> bool:
    import pandas as pd

    try:
        if series:
            pd.testing.assert_series_equal(
                a, b, check_exact=True, check_index_type=True, check_series_type=True,
                check_freq=True, check_flags=True, check_categorical=True,
            )  # fmt: skip
        else:
            pd.testing.assert_frame_equal(
                a, b, check_exact=True, check_column_type=True, check_index_type=True,
                check_frame_type=True, check_freq=True, check_flags=True, check_categorical=True,
            )  # fmt: skip
    except AssertionError:
        return False
    if type(a.attrs) is not type(b.attrs) or a.attrs != b.attrs:
        return False
    if not _same_index_names(a.index, b.index):
        return False
    # pandas' own check counts None and NaN as equal in object data; a round trip must not
    for x, y in _object_arrays(a, b, series=series):
        if any(type(p) is not type(q) for p, q in zip(x, y, strict=True)):
            return False
    return True


def _same_index_names(a: pd.Index, b: pd.Index) -> bool:
    return list(a.names) == list(b.names) and all(type(x) is type(y) for x, y in zip(a.names, b.names, strict=True))


def _object_index(index: pd.Index) -> bool:
    import pandas as pd

    if isinstance(index, pd.MultiIndex):
        return any(_is_object(level.dtype) for level in index.levels)
    return _is_object(index.dtype)


def _is_object(dtype: Any) -> bool:
    """NumPy's ``object`` dtype (pandas' extension dtypes have kind "O" too: not those)."""
    import numpy as np

    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def _object_arrays(a: Any, b: Any, *, series: bool) -> list[tuple[Any, Any]]:
    """Pairs of matching object arrays of ``a`` and ``b`` (columns, index levels)."""
    import pandas as pd

    pairs: list[tuple[Any, Any]] = []
    if series:
        if _is_object(a.dtype):
            pairs.append((a.array, b.array))
    else:
        for i, dtype in enumerate(a.dtypes):
            if _is_object(dtype):
                pairs.append((a.iloc[:, i].array, b.iloc[:, i].array))
    if isinstance(a.index, pd.MultiIndex):
        for i in range(a.index.nlevels):
            x, y = a.index.get_level_values(i), b.index.get_level_values(i)
            if _is_object(x.dtype):
                pairs.append((x, y))
    elif _is_object(a.index.dtype):
        pairs.append((a.index, b.index))
    return pairs


def _json_exact(value: Any) -> bool:
    """Whether JSON gives ``value`` back as it is (pyarrow keeps ``attrs`` as JSON)."""
    try:
        return bool(json.loads(json.dumps(value)) == value) and _no_tuples(value)
    except (TypeError, ValueError):
        return False


def _no_tuples(value: Any) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and _no_tuples(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_no_tuples(v) for v in value)
    return type(value) in (str, int, float, bool, type(None))
