"""Serving flows: the REST API, webhooks, cron schedules and the approvers' web page.

``flownb serve TARGET...`` and ``%flow serve`` call :func:`make_server`. Layout:

- ``app``: the Starlette app (auth and rate-limit guard, errors) and :class:`Server` (uvicorn)
- ``routes``: the ``/api`` routes; ``events``: a run's events as Server-Sent Events
- ``hooks``: ``POST /hooks/{flow}`` with GitHub's HMAC signature
- ``scheduler``: the loop that fires schedules (the table is ``flownb.store.schedules``)
- ``page`` and ``static/``: the web page; ``auth``, ``ratelimit``, ``http``: the plumbing
- ``flows``: the served flows and the one way the server starts their runs
- ``runs``: runs as the API shows them

Needs the ``serve`` extra: ``pip install 'flownb[serve]'``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flownb.server.app import Server

__all__ = ["make_server"]


def make_server(
    flows: Iterable[Any], *, db: Any = None, host: str = "127.0.0.1", port: int = 8642, token: str | None = None,
    token_file: Path | None = None, webhook_secret: str | None = None, rate: float = 10.0, burst: int = 20,
    schedules: bool = True, announce: Any = print,
) -> Server:  # fmt: skip
    """A server of ``flows`` (``Flow`` or :class:`ServedFlow` objects) on the store ``db``.

    The token is ``token``, else ``FLOWNB_TOKEN``, else the one in ``.flownb/token``
    (generated there at the first start, mode 0600, and announced once); the
    webhook secret is ``webhook_secret``, else ``FLOWNB_WEBHOOK_SECRET``.
    """
    try:
        from flownb.server.app import Server
        from flownb.server.flows import ServedFlow, ServedFlows
    except ImportError as exc:  # pragma: no cover - the extra is missing
        from flownb.errors import FlownbError

        raise FlownbError(f"flownb serve needs the serve extra ({exc.name}): pip install 'flownb[serve]'") from None
    from flownb.server.auth import TOKEN_FILE, load_token
    from flownb.server.hooks import SECRET_ENV
    from flownb.store.base import open_store

    store = open_store(db)
    served = ServedFlows((f if isinstance(f, ServedFlow) else ServedFlow(f) for f in flows), store)
    if token is None:
        source = load_token(token_file or TOKEN_FILE)
        token = source.token
        if source.generated:
            announce(f"flownb serve: a new API token, written to {source.where} (mode 0600; shown once):\n  {token}")
        else:
            announce(f"flownb serve: the API token is in {source.where}")
    secret = webhook_secret if webhook_secret is not None else os.environ.get(SECRET_ENV) or None
    return Server(
        served, token=token, host=host, port=port, rate=rate, burst=burst, webhook_secret=secret,
        schedules=schedules,
    )  # fmt: skip
