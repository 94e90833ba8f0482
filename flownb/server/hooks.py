"""``POST /hooks/{flow}``: a webhook starts a run with ``params = {"payload": <the JSON body>}``.

With a secret (``FLOWNB_WEBHOOK_SECRET``) the request must carry GitHub's
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``; a missing or
wrong signature is 401, checked in constant time over the exact bytes received,
before the body is parsed or the flow looked up (an unsigned caller learns
nothing, not even which flows exist). Without a secret, anyone who can reach the
server can start the flow: serve on 127.0.0.1, or set a secret.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from flownb.server.http import ApiError, json_response, parse_json, read_body

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from flownb.server.app import ServerState

SECRET_ENV = "FLOWNB_WEBHOOK_SECRET"  # noqa: S105  (the variable's name, not a secret)
SIGNATURE_HEADER = "x-hub-signature-256"


def sign(secret: str, body: bytes) -> str:
    """The header value GitHub sends for ``body``: ``sha256=`` and the hex HMAC."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(secret: str | None, body: bytes, header: str | None) -> None:
    """Nothing without a secret; with one, 401 unless ``header`` signs ``body``."""
    if not secret:
        return
    if not header:
        raise ApiError(401, f"this webhook needs an X-Hub-Signature-256 header (HMAC-SHA256 of the body, {SECRET_ENV})")
    if not hmac.compare_digest(header.strip().encode(), sign(secret, body).encode()):
        raise ApiError(401, "the X-Hub-Signature-256 signature does not match the body")


async def hook(request: Request) -> Response:
    st: ServerState = request.app.state.flownb
    body = await read_body(request)
    check_signature(st.webhook_secret, body, request.headers.get(SIGNATURE_HEADER))
    name = request.path_params["flow"]
    st.flows.get(name)  # 404
    payload = parse_json(body)
    run = await run_in_threadpool(st.flows.start, name, {"payload": payload}, trigger="webhook")
    return json_response({"run_id": run.id, "status": run.status}, 202)


ROUTES = [Route("/hooks/{flow}", hook, methods=["POST"])]
