"""The web page at ``/``, for approvers who do not use Jupyter.

``/`` is the page when the browser holds a valid session cookie, else the sign-in
form; ``POST /login`` checks the token (rate-limited by address, like every
unauthenticated request) and sets the cookie (auth.py says what it holds);
``POST /logout`` clears it. The page's script and style come from
``flownb/server/static`` (package data: no CDN, it works offline) and it talks to
the same ``/api`` routes as any client. Every response forbids framing (a hidden
frame cannot trick a click on Approve) and scripts other than the server's own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flownb.server.auth import COOKIE
from flownb.server.http import ApiError, read_body

if TYPE_CHECKING:
    from starlette.requests import Request

    from flownb.server.app import ServerState

STATIC = Path(__file__).parent / "static"
SESSION_SECONDS = 7 * 24 * 3600
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _signed_in(request: Request) -> bool:
    st: ServerState = request.app.state.flownb
    return st.auth.cookie_ok(request.cookies.get(COOKIE), method="GET", page_header=None)


async def index(request: Request) -> Response:
    if _signed_in(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
    return FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-store"})


async def login(request: Request) -> Response:
    st: ServerState = request.app.state.flownb
    client = request.client.host if request.client else "?"
    wait = st.limiter.take(f"login:{client}")
    if wait:
        raise ApiError(429, "too many sign-in attempts; wait and try again", {"Retry-After": str(math.ceil(wait))})
    form = parse_qs((await read_body(request)).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    if not st.auth.token_ok(token):
        return RedirectResponse("/?error=1", status_code=303)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE, st.auth.session, max_age=SESSION_SECONDS, path="/", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
]
