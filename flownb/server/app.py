"""The Starlette app and the uvicorn server around it.

:func:`build_app` wires the routes behind one guard (pure ASGI, so streams stay
streams): every ``/api`` request needs the bearer token or the page's session
cookie (401 otherwise), and takes a token from its key's bucket (429 with
``Retry-After`` when empty): the token's bucket, or for a request without valid
credentials its address's, so guessing the token is rate-limited too. Every
response carries the page's security headers. Errors are JSON ``{"error": ...}``;
an unexpected exception is logged and answered 500 in the same shape.

:class:`Server` runs uvicorn in the foreground (``flownb serve``) or on a
thread (``%flow serve``, tests), with the schedule loop beside it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException

from flownb.errors import FlownbError, RunNotFound, StoreError
from flownb.server import hooks, page, routes
from flownb.server.auth import COOKIE, PAGE_HEADER, Auth
from flownb.server.http import ApiError, error_response
from flownb.server.ratelimit import RateLimiter
from flownb.server.runs import RunReader
from flownb.server.scheduler import Scheduler

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from flownb.server.flows import ServedFlows
    from flownb.store.base import Store

log = logging.getLogger("flownb")


@dataclass
class ServerState:
    """What the routes share (``request.app.state.flownb``)."""

    flows: ServedFlows
    store: Store
    auth: Auth
    limiter: RateLimiter
    runs: RunReader
    webhook_secret: str | None


def build_app(
    flows: ServedFlows, *, token: str, rate: float = 10.0, burst: int = 20, webhook_secret: str | None = None
) -> Starlette:
    state = ServerState(
        flows=flows, store=flows.store, auth=Auth(token), limiter=RateLimiter(rate, burst),
        runs=RunReader(flows.store), webhook_secret=webhook_secret or None,
    )  # fmt: skip
    app = Starlette(
        routes=[*routes.ROUTES, *hooks.ROUTES, *page.ROUTES],
        exception_handlers={
            ApiError: _api_error, HTTPException: _http_error, FlownbError: _flownb_error, Exception: _unexpected,
        },
    )
    app.state.flownb = state
    app.add_middleware(_Guard, state=state)
    return app


class _Guard:
    """Auth and rate limit of ``/api`` and ``/hooks``; security headers on everything."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        refusal = None
        if path.startswith("/api/") or path == "/api":
            refusal = self._check_api(scope)
        elif path.startswith("/hooks/"):
            refusal = self._limit(f"hook:{_client(scope)}")

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in page.SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)

    def _check_api(self, scope: Scope) -> Response | None:
        auth = self.state.auth
        headers = Headers(scope=scope)
        how = None
        if auth.bearer_ok(headers.get("authorization")):
            how = "bearer"
        else:
            cookie = _cookie(headers.get("cookie"), COOKIE)
            if auth.cookie_ok(cookie, method=scope["method"], page_header=headers.get(PAGE_HEADER)):
                how = "cookie"
        if how is None:
            limited = self._limit(f"anonymous:{_client(scope)}")
            if limited is not None:
                return limited
            return error_response(
                401, "this route needs Authorization: Bearer TOKEN (FLOWNB_TOKEN, or the one in .flownb/token)",
                {"WWW-Authenticate": 'Bearer realm="flownb"'},
            )  # fmt: skip
        scope["flownb.auth"] = how
        return self._limit("token")

    def _limit(self, key: str) -> Response | None:
        wait = self.state.limiter.take(key)
        if not wait:
            return None
        seconds = max(1, math.ceil(wait))
        return error_response(
            429, f"rate limit: {self.state.limiter.rate:g} requests a second (bursts of {self.state.limiter.burst}); "
            f"retry after {seconds} s", {"Retry-After": str(seconds)},
        )  # fmt: skip


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001  (a malformed Cookie header is no session)
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see GET /api/flows and GET /api/runs"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, exc.headers)


async def _flownb_error(request: Request, exc: Exception) -> Response:
    """flownb's own refusals that reach a route: the store busy or failing (503, try again),
    a run that went away (404), anything else a conflict with the run's state (409)."""
    if isinstance(exc, StoreError):
        return error_response(503, str(exc), {"Retry-After": "1"})
    if isinstance(exc, RunNotFound):
        return error_response(404, str(exc))
    return error_response(409, str(exc))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("flownb serve: %s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"the server failed: {type(exc).__name__}: {exc}")


class Server:
    """uvicorn serving :func:`build_app`, with the schedule loop.

    ``port=0`` takes a free port (``server.port`` says which, once started).
    ``start()`` returns once the server listens and has caught up missed fires; ``stop()``
    ends both and waits for them.
    """

    def __init__(
        self, flows: ServedFlows, *, token: str, host: str = "127.0.0.1", port: int = 8642,
        rate: float = 10.0, burst: int = 20, webhook_secret: str | None = None, schedules: bool = True,
        log_level: str = "warning",
    ) -> None:  # fmt: skip
        import uvicorn

        self.flows = flows
        self.host = host
        self.app = build_app(flows, token=token, rate=rate, burst=burst, webhook_secret=webhook_secret)
        self.scheduler = Scheduler(flows) if schedules else None
        config = uvicorn.Config(
            self.app, host=host, port=port, log_level=log_level, lifespan="off", access_log=False,
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        servers: list[Any] = getattr(self._uvicorn, "servers", [])
        for s in servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return int(self._uvicorn.config.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        """Serve on a thread; return once listening (raise if it could not start)."""
        self._thread = threading.Thread(target=self._uvicorn.run, name="flownb-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise OSError(f"flownb serve could not listen on {self.host}:{self._uvicorn.config.port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"flownb serve did not start within {timeout:g}s")
            time.sleep(0.01)
        if self.scheduler is not None:
            self.scheduler.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until Ctrl-C (uvicorn handles the signals)."""
        if self.scheduler is not None:
            # once listening: the loop's first fire must not share the GIL with uvicorn's start
            threading.Thread(target=self._start_scheduler, name="flownb-serve-start", daemon=True).start()
        try:
            self._uvicorn.run()
        except SystemExit:  # uvicorn exits when it cannot bind: say so in one line instead
            if self._uvicorn.started:
                raise
        finally:
            if self.scheduler is not None:
                self.scheduler.stop()
        if not self._uvicorn.started:
            raise OSError(
                f"flownb serve could not listen on {self.host}:{self._uvicorn.config.port} "
                "(in use by another program? pick another --port)"
            )

    def _start_scheduler(self) -> None:
        while not self._uvicorn.started and not self._uvicorn.should_exit:
            time.sleep(0.01)
        if self.scheduler is not None and not self._uvicorn.should_exit:
            self.scheduler.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
