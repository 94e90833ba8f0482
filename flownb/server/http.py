"""JSON in and out: responses, the one error shape ``{"error": ...}``, and request bodies.

Every refusal is an :class:`ApiError` carrying its status; the app turns it (and
Starlette's own 404/405) into JSON. Bodies are read whole, size-capped and parsed
before anything happens, so bad input never starts half a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

MAX_BODY = 1 << 20  # 1 MiB: params and webhook payloads; larger bodies are refused with 413


class ApiError(Exception):
    """A request refused: ``status`` and a message that says what to do."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=_fallback),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past :data:`MAX_BODY` (counted as it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, *, empty: Any = None) -> Any:
    """The body as JSON (``empty`` for an empty body); 400 naming the problem otherwise."""
    if not body.strip():
        return empty
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


async def json_object(request: Request, *, allowed: frozenset[str]) -> dict[str, Any]:
    """A JSON object body (an empty body is ``{}``) with only ``allowed`` keys, else 400."""
    data = parse_json(await read_body(request), empty={})
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; the body takes {', '.join(sorted(allowed))}")
    return data


def _fallback(value: Any) -> Any:
    """What orjson cannot write itself (a Decimal, a numpy scalar, a set...): as plain as it gets."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
