"""A run's params as recorded: exactly, with the codecs of outputs, secrets redacted.

Params JSON keeps exactly (plain data: no tuples, NaN, int keys, lone surrogates or
ints past 64 bits) stay inline in the ``run_started`` event, so that ``runs.params``
is readable JSON. Every other param (a datetime, a Decimal, a set, bytes, a tuple, a
DataFrame...) is stored as a value beside the event, by the codec an output of the
same value would get, and ``runs.params`` shows a short text for it; resume loads it
back exactly. A param no codec can store refuses the run before any step starts.
Values under secret-looking names are recorded as ``[redacted]``, at any depth; the
run itself gets the real values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flownb.engine.context import REDACTED, is_secret_name
from flownb.errors import FlownbError
from flownb.store import codecs

if TYPE_CHECKING:
    from flownb.store.base import Store

#: the ``step`` of params stored as values (``__`` names are refused for real steps)
PARAMS_STEP = "__params__"
#: the name under which params whose names are not all text are stored, as one value
WHOLE = "*"
SHOWN_CHARS = 200


@dataclass(frozen=True)
class RecordedParams:
    """What ``run_started`` records of a run's params."""

    shown: dict[str, Any]
    """Inline JSON: the values themselves, or a short text for those stored as values."""
    stored: list[tuple[str, codecs.Encoded]] = field(default_factory=list)
    """Params stored as values beside the event, by name."""
    whole: bool = False
    """The params are stored as one value (their names are not all text): a param named
    like that value, ``*``, is then no param of its own."""


def record_params(params: Mapping[Any, Any], *, flow: str) -> RecordedParams:
    """Encode a run's params for the store, or refuse the run naming the param."""
    recordable = redacted(params)
    if all(type(k) is str and _utf8(k) for k in recordable):
        if codecs.encode(recordable).inline is not None:  # all plain and small: the common case
            return RecordedParams(dict(recordable))
        shown: dict[str, Any] = {}
        stored: list[tuple[str, codecs.Encoded]] = []
        for name, value in recordable.items():
            encoded = _encode(name, value, flow)
            if encoded.codec == "json" and encoded.blob is None:
                shown[name] = value
            else:
                shown[name] = _shown(value)
                stored.append((name, encoded))
        return RecordedParams(shown, stored)
    # names that are not all text: the params as one value
    encoded = _encode(WHOLE, dict(recordable), flow)
    return RecordedParams({_text(k): _shown(v) for k, v in recordable.items()}, [(WHOLE, encoded)], whole=True)


def restore_params(store: Store, run_id: str, payload: Mapping[str, Any]) -> dict[Any, Any]:
    """The params ``record_params`` recorded in a ``run_started`` payload, exactly."""
    params: dict[Any, Any] = dict(payload.get("params") or {})
    for output in payload.get("stored_params") or ():
        value = store.load_value(run_id, PARAMS_STEP, output["name"], output)
        if output.get("whole"):
            return dict(value)
        params[output["name"]] = value
    return params


def redacted(value: Any) -> Any:
    """``value`` with what is under secret-looking names replaced by ``[redacted]``.

    Unlike a JSON-minded copy, every other value keeps its exact type (a tuple stays
    a tuple), and a value with nothing to redact is returned as it is.
    """
    if isinstance(value, Mapping):
        items = {k: REDACTED if isinstance(k, str) and is_secret_name(k) else redacted(v) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        return _same_type(value, items)
    if type(value) in (list, tuple):
        items_ = [redacted(v) for v in value]
        if all(a is b for a, b in zip(items_, value, strict=True)):
            return value
        return type(value)(items_)
    return value


def _same_type(original: Mapping[Any, Any], items: dict[Any, Any]) -> Any:
    try:
        return type(original)(items)  # type: ignore[call-arg]
    except TypeError:  # a mapping that cannot be built from a dict (a defaultdict): a dict will do
        return items


def _encode(name: str, value: Any, flow: str) -> codecs.Encoded:
    encoded = codecs.encode(value)
    if encoded.codec == codecs.VOLATILE:
        raise FlownbError(
            f"param {name!r} of a run of flow {flow!r} cannot be recorded ({encoded.reason}), so the run "
            "could not be resumed; pass it as plain data, or build the value inside a step"
        )
    # a param is restored from its stream: no SQL table for it
    return dataclasses.replace(encoded, table=None) if encoded.table is not None else encoded


def _shown(value: Any) -> str:
    """A short, always-recordable text for a param stored as a value."""
    try:
        text = ascii(value)
    except Exception:  # noqa: BLE001  (a broken __repr__ must not refuse the run)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _text(key: Any) -> str:
    return key if type(key) is str and _utf8(key) else ascii(key)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
