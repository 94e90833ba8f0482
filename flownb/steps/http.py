"""HTTP steps: one request with httpx's async client, on the engine's loop.

Guarantees:

- Credentials never reach the store: header values may read the environment
  (``"Bearer {{ env.API_TOKEN }}"``, headers only), and the recorded inputs carry the request
  with Authorization-like headers (and secret-looking query parameters)
  replaced by ``[redacted]``; the URL is recorded without user info. The
  values themselves (of secret-looking headers, ``params=`` and URL query
  parameters, and a URL's password) are scrubbed from everything the run
  records afterwards, errors and tracebacks included.
- Redirects are not followed unless ``follow_redirects=True``; when they are,
  every hop is checked against ``allow_hosts`` before it is sent.
- A response is read up to ``max_bytes`` (default 10 MB); a larger one fails.
- Transport errors, 5xx, 408 and 429 raise errors the engine may retry (under
  the step's ``retries=``), waiting at least the server's ``Retry-After``;
  other unexpected statuses, a bad URL or a refused host are never retried.

In a notebook, ``%%step NAME --kind http`` takes a request in the ``.http``
file form; :func:`parse_http_request` turns it into this kind's options.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import os
import re
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from flownb.engine.context import StepContext, redact_headers
from flownb.errors import FlowDefinitionError
from flownb.model import templates
from flownb.steps.registry import register_kind

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: httpx's per-operation timeout when the step has none (connect, each read...)
DEFAULT_TIMEOUT = 60.0
MAX_REDIRECTS = 10
RETRY_STATUSES = frozenset({408, 429})


class HttpError(Exception):
    """A request failed; ``retryable`` and ``retry_after`` steer the engine's retries."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class HttpKind:
    name = "http"
    main_option: str | None = "url"  # the notebook magic fills all options through parse_http_request
    required: tuple[str, ...] = ("url",)
    optional: Mapping[str, Any] = {
        "method": "GET", "headers": None, "params": None, "json": None, "body": None, "expect": None,
        "allow_hosts": None, "follow_redirects": False, "max_bytes": DEFAULT_MAX_BYTES,
    }  # fmt: skip

    def references(self, options: Mapping[str, Any]) -> set[str]:
        keys = ("url", "method", "params", "json", "body")
        refs = set().union(*(templates.value_references(options.get(k)) for k in keys))
        return refs | (templates.value_references(options.get("headers")) - {"env"})

    def validate(self, step: str, options: dict[str, Any]) -> None:
        where = f"step {step!r} (http)"
        if not isinstance(options.get("url"), str) or not options["url"].strip():
            raise FlowDefinitionError(f"{where}: url must be a non-empty string")
        method = options.get("method")
        if not isinstance(method, str) or (method.upper() not in METHODS and not templates.is_template(method)):
            raise FlowDefinitionError(f"{where}: method must be one of {', '.join(sorted(METHODS))}")
        for opt in ("headers", "params"):
            if options.get(opt) is not None and not isinstance(options[opt], Mapping):
                raise FlowDefinitionError(f"{where}: {opt} must be a dict")
        if options.get("json") is not None and options.get("body") is not None:
            raise FlowDefinitionError(f"{where}: give json= or body=, not both")
        if options.get("body") is not None and not isinstance(options["body"], str | bytes):
            raise FlowDefinitionError(f"{where}: body must be a string or bytes (use json= for data)")
        try:
            _expected(options.get("expect"))
        except (TypeError, ValueError):
            raise FlowDefinitionError(f"{where}: expect must be a status code or a list of them") from None
        hosts = options.get("allow_hosts")
        if hosts is not None and (isinstance(hosts, str) or not all(isinstance(h, str) for h in hosts)):
            raise FlowDefinitionError(f"{where}: allow_hosts must be a list of host names, e.g. ['api.example.com']")
        size = options.get("max_bytes")
        if not isinstance(size, int) or size <= 0:
            raise FlowDefinitionError(f"{where}: max_bytes must be a positive integer")

    async def execute(self, ctx: StepContext) -> Any:
        o = ctx.options
        url = str(ctx.render(o["url"])).strip()
        method = str(ctx.render(o["method"])).upper()
        # headers alone may read the environment ({{ env.API_TOKEN }}): a secret then
        # goes from the environment to the request without passing through params
        env_scope = {**ctx.scope, "env": dict(os.environ)}
        headers = {str(k): str(templates.render_value(v, env_scope)) for k, v in (o["headers"] or {}).items()}
        params = ctx.render(o["params"]) if o["params"] is not None else None
        payload = ctx.render(o["json"]) if o["json"] is not None else None
        body = o["body"] if isinstance(o["body"], bytes) else (ctx.render(o["body"]) if o["body"] is not None else None)
        # before anything is recorded: these values are scrubbed from every record of the run
        ctx.secrets.add_named(headers)
        ctx.secrets.add_named({str(k): v for k, v in params.items()} if isinstance(params, Mapping) else {})
        ctx.secrets.add_url(url)
        ctx.recorded_inputs = {
            "method": method, "url": _safe_url(url), "headers": redact_headers(headers),
            "params": redact_headers({str(k): str(v) for k, v in params.items()}) if params else None,
            "json": payload is not None, "body_bytes": len(body) if body is not None else None,
        }  # fmt: skip
        request = _build(ctx, method, url, headers=headers, params=params, payload=payload, body=body)
        return await send(ctx, request)


def _build(ctx: StepContext, method: str, url: str, *, headers: dict[str, str], params: Any,
           payload: Any, body: Any) -> httpx.Request:  # fmt: skip
    if method not in METHODS:
        raise HttpError(f"step {ctx.step!r}: method {method!r} is not one of {', '.join(sorted(METHODS))}",
                        retryable=False)  # fmt: skip
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise HttpError(f"step {ctx.step!r}: {url!r} is not a valid URL ({exc})", retryable=False) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise HttpError(
            f"step {ctx.step!r}: {_safe_url(url)!r} is not an http(s) URL with a host", retryable=False
        )
    _check_host(ctx, parsed)
    content = body.encode() if isinstance(body, str) else body
    return _client(ctx).build_request(method, parsed, headers=headers, params=params, json=payload, content=content)


async def send(ctx: StepContext, request: httpx.Request) -> dict[str, Any]:
    """Send, follow allowed redirects if asked, and read at most ``max_bytes``."""
    o = ctx.options
    client = _client(ctx)
    timeout = httpx.Timeout(ctx.timeout or DEFAULT_TIMEOUT)
    request.extensions["timeout"] = timeout.as_dict()
    where = f"step {ctx.step!r}: {request.method} {_safe_url(str(request.url))}"
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            raise HttpError(f"{where} failed: {type(exc).__name__}: {exc}", retryable=True) from None
        try:
            nxt = response.next_request if (o["follow_redirects"] and response.is_redirect) else None
            if nxt is None:
                content = await _read(where, response, o["max_bytes"])
                return _result(where, response, content, _expected(o["expect"]))
        finally:
            await response.aclose()
        _check_host(ctx, nxt.url)
        nxt.extensions["timeout"] = timeout.as_dict()
        request = nxt
    raise HttpError(f"{where}: more than {MAX_REDIRECTS} redirects", retryable=False)


async def _read(where: str, response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(f"{where}: the response is {declared} bytes, over max_bytes={limit}", retryable=False)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise HttpError(f"{where}: the response is over max_bytes={limit}; raise max_bytes to accept it",
                                retryable=False)  # fmt: skip
            chunks.append(chunk)
    except httpx.TransportError as exc:
        raise HttpError(f"{where} failed while reading: {type(exc).__name__}: {exc}", retryable=True) from None
    return b"".join(chunks)


def _result(where: str, response: httpx.Response, content: bytes, expected: frozenset[int] | None) -> dict[str, Any]:
    status = response.status_code
    ok = (200 <= status < 300) if expected is None else status in expected
    if not ok:
        retryable = status >= 500 or status in RETRY_STATUSES
        snippet = content[:300].decode("utf-8", "replace")
        raise HttpError(
            f"{where} answered {status} {response.reason_phrase}"
            f" (expected {'2xx' if expected is None else sorted(expected)})"
            + (f": {snippet}" if snippet else "")
            + ("" if retryable else "; not retried: the same request would fail again"),
            retryable=retryable, retry_after=_retry_after(response.headers.get("retry-after")), status=status,
        )  # fmt: skip
    out: dict[str, Any] = {"status": status, "headers": redact_headers(dict(response.headers))}
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            out["json"] = jsonlib.loads(content) if content else None
            return out
        except ValueError:
            pass  # a server that says JSON but sends something else: give the text
    out["text"] = content.decode(response.encoding or "utf-8", "replace")
    return out


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), capped at 10 minutes."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), 600.0)


def _expected(expect: Any) -> frozenset[int] | None:
    if expect is None:
        return None
    if isinstance(expect, int):
        return frozenset({expect})
    if isinstance(expect, str) or not isinstance(expect, Iterable):
        raise TypeError(expect)
    codes = frozenset(int(c) for c in expect)
    if not codes or not all(100 <= c < 600 for c in codes):
        raise ValueError(expect)
    return codes


def _check_host(ctx: StepContext, url: httpx.URL) -> None:
    allowed = ctx.options.get("allow_hosts")
    if allowed is None:
        return
    host = url.host.lower()
    for allowed_host in allowed:
        pattern = allowed_host.lower()
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return
    raise HttpError(
        f"step {ctx.step!r}: host {host!r} is not in allow_hosts {list(allowed)}; add it to allow it",
        retryable=False,
    )


def _safe_url(url: str) -> str:
    """The URL without user info (``user:password@``), for records and messages."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return url.rsplit("@", maxsplit=1)[-1]
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


# one pooled client per event loop: connections are reused across steps, and a
# client never outlives (or crosses into) another loop
_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client(ctx: StepContext) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get(loop)
    if client is None:
        client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
        )  # fmt: skip
        _CLIENTS[loop] = client
    return client


_WORD = re.compile(r"(?:\{\{.*?\}\}|\{%.*?%\}|\S)+")


def _words(line: str) -> list[str]:
    """A line's words, a template tag with spaces inside counting as part of one."""
    return _WORD.findall(line)


def parse_http_request(text: str) -> dict[str, Any]:
    """Options of an http step from a request in the ``.http`` file form.

    The form: optional ``#`` or ``//`` comment lines, a request line
    ``METHOD URL [HTTP/1.1]`` (or a bare URL, meaning GET), query continuation
    lines starting with ``?`` or ``&``, ``Name: value`` header lines, a blank
    line, then the body. Templates (``{{ ... }}``) are kept as they are; they
    render when the step runs. Returns ``{"method", "url"}`` plus ``headers``
    and ``body`` when present. Raises ValueError for text with no request line.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith(("#", "//"))):
        i += 1
    if i == len(lines):
        raise ValueError("an http request needs a request line, e.g. 'GET https://example.com/'")
    # template tags may hold spaces ({{ params.base }}/x): split around them, not inside
    parts = _words(lines[i])
    i += 1
    if parts[0].upper() in METHODS and len(parts) >= 2:
        method, url = parts[0].upper(), parts[1]
        extra = parts[2:]
    else:
        method, url, extra = "GET", parts[0], parts[1:]
    if extra and not (len(extra) == 1 and extra[0].upper().startswith("HTTP/")):
        raise ValueError(f"cannot read the request line {lines[i - 1]!r}; write 'METHOD URL'")
    while i < len(lines) and lines[i].strip().startswith(("?", "&")):
        url += lines[i].strip()
        i += 1
    headers: dict[str, str] = {}
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        i += 1
        if line.lstrip().startswith(("#", "//")):
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"cannot read the header line {line!r}; write 'Name: value'")
        headers[name.strip()] = value.strip()
    options: dict[str, Any] = {"method": method, "url": url}
    if headers:
        options["headers"] = headers
    body = "\n".join(lines[i + 1 :]).strip("\n") if i < len(lines) else ""
    if body.strip():
        options["body"] = body
    return options


register_kind(HttpKind())
