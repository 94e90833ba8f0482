"""The server's parts without a server: the token, the rate limit, webhook signatures, pages of runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flownb.server.auth import Auth, load_token
from flownb.server.hooks import check_signature, sign
from flownb.server.http import ApiError
from flownb.server.ratelimit import RateLimiter
from flownb.store.listing import BadCursor, decode_cursor, encode_cursor


def test_the_token_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / ".flownb" / "token"
    first = load_token(path, environ={})
    assert first.generated and len(first.token) >= 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_token(path, environ={})
    assert not again.generated and again.token == first.token
    from_env = load_token(path, environ={"FLOWNB_TOKEN": "  s3cret "})
    assert (from_env.token, from_env.where, from_env.generated) == ("s3cret", "FLOWNB_TOKEN", False)


def test_bearer_and_cookie_checks() -> None:
    auth = Auth("tok")
    assert auth.bearer_ok("Bearer tok") and auth.bearer_ok("bearer tok")
    assert not auth.bearer_ok("Bearer tok2") and not auth.bearer_ok("tok") and not auth.bearer_ok(None)
    assert auth.session != "tok" and "tok" not in auth.session  # the cookie never holds the token
    assert auth.cookie_ok(auth.session, method="GET", page_header=None)
    # a change through the cookie needs the page's own header (no other origin can add it)
    assert not auth.cookie_ok(auth.session, method="POST", page_header=None)
    assert auth.cookie_ok(auth.session, method="POST", page_header="1")
    assert not auth.cookie_ok("forged", method="GET", page_header=None)
    assert Auth("other").session != auth.session


def test_the_rate_limit_refills_at_its_rate_after_a_burst() -> None:
    now = [100.0]
    limiter = RateLimiter(10, 20, clock=lambda: now[0])
    assert [limiter.take("t") for _ in range(20)] == [0.0] * 20
    wait = limiter.take("t")
    assert wait == pytest.approx(0.1)
    assert limiter.take("other") == 0.0  # buckets are per key
    now[0] += wait
    assert limiter.take("t") == 0.0
    assert limiter.take("t") > 0
    now[0] += 100  # a long pause refills the burst, never more
    assert [limiter.take("t") for _ in range(20)] == [0.0] * 20
    assert limiter.take("t") > 0


def test_webhook_signatures_follow_githubs_convention() -> None:
    # the example from GitHub's docs ("Validating webhook deliveries")
    assert sign("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    body = b'{"action": "opened"}'
    check_signature(None, body, None)  # no secret: nothing to check
    check_signature("s", body, sign("s", body))
    for header in (None, "", "sha256=00", sign("other", body), sign("s", body + b" ")):
        with pytest.raises(ApiError) as refused:
            check_signature("s", body, header)
        assert refused.value.status == 401


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor(encode_cursor(1_700_000_000_123_456, "run-1")) == (1_700_000_000_123_456, "run-1")
    for bad in ("", "x", "!!!", encode_cursor(1, "a")[:-2] + "zz"):
        with pytest.raises(BadCursor):
            decode_cursor(bad)
