"""Who may use the server: one bearer token, and the page's session cookie derived from it.

* The token is ``FLOWNB_TOKEN``, or the one in ``.flownb/token``; when neither exists the
  first start generates it there, created with mode 0600 in one ``open`` (no moment
  when another user could read it), and says so once.
* ``/api`` routes take ``Authorization: Bearer TOKEN``; the page's requests carry the
  ``flownb_session`` cookie instead: an HMAC of the token (the cookie never holds the
  token itself, and a new token ends every session), HttpOnly (scripts cannot read it)
  and SameSite=Strict (no other site's page sends it). A state-changing request
  authenticated by the cookie must also carry ``X-Flownb-Page: 1``, a header no other
  origin can add without a CORS preflight the server never grants.
* Comparisons are constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "FLOWNB_TOKEN"  # noqa: S105  (the variable's name, not a secret)
TOKEN_FILE = Path(".flownb") / "token"
COOKIE = "flownb_session"
PAGE_HEADER = "x-flownb-page"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class TokenSource:
    token: str
    where: str
    """``FLOWNB_TOKEN``, or the file it was read from or written to."""
    generated: bool
    """True only the one time it was created: then it is printed."""


def load_token(path: Path = TOKEN_FILE, *, environ: dict[str, str] | None = None) -> TokenSource:
    """The server's token: ``FLOWNB_TOKEN``, else ``path``, else a new one written to ``path`` (0600)."""
    env = os.environ if environ is None else environ
    from_env = (env.get(TOKEN_ENV) or "").strip()
    if from_env:
        return TokenSource(from_env, TOKEN_ENV, generated=False)
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return TokenSource(token, str(path), generated=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server wrote it first: use theirs
        return load_token(path, environ=environ)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return TokenSource(token, str(path), generated=True)


class Auth:
    """Checks a request's credentials against the one token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the server needs a non-empty token")
        self._token = token.encode()
        self.session = hmac.new(self._token, b"flownb page session", hashlib.sha256).hexdigest()

    def bearer_ok(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)

    def token_ok(self, token: str) -> bool:
        return hmac.compare_digest(token.strip().encode(), self._token)

    def cookie_ok(self, cookie: str | None, *, method: str, page_header: str | None) -> bool:
        """A valid session cookie; for a request that changes something, with the page's header too."""
        if not cookie or not hmac.compare_digest(cookie.encode(), self.session.encode()):
            return False
        return method in _SAFE_METHODS or page_header == "1"
