"""Secrets never reach the store: a canary key and header, searched for everywhere."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import flownb
from flownb.store.base import forget_store
from tests.servers import HttpServer, MessagesServer, Reply

KEY = "sk-ant-CANARY-5f1e0c3a9b"
BEARER = "CANARY-bearer-77d2e4"


def test_canaries_are_nowhere_in_the_store(
    tmp_path: Path, http_server: HttpServer, messages_server: MessagesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    db = tmp_path / "x.duckdb"
    flow = flownb.Flow("secrets", db=str(db))
    auth = {"Authorization": f"Bearer {BEARER}", "X-Api-Key": BEARER}
    flow.http("fetch", f"{http_server.url}/json", headers=auth)
    monkeypatch.setenv("FLOWNB_TEST_TOKEN", BEARER)
    flow.http("templated", f"{http_server.url}/json", headers={"Authorization": "Bearer {{ env.FLOWNB_TEST_TOKEN }}"})
    flow.http("fails", f"{http_server.url}/status/500", headers=auth, retries=1, retry_delay=0,
              on_failure="continue")  # fmt: skip
    messages_server.script.extend([Reply(text="ok"), Reply(status=401, error_type="authentication_error")])
    flow.agent("ask", "Summarise {{ fetch.json }}")
    flow.agent("denied", "again", after="ask", on_failure="continue")
    run = flow.run(params={"topic": "canaries"}).wait(60)
    assert run.outputs["ask"] == "ok"
    assert run.step_status["fails"] == "failed" and run.step_status["denied"] == "failed"

    # the secrets were really used...
    sent = [r.headers for r in http_server.requests]
    assert all(BEARER in h.get("authorization", "") for h in sent)
    assert all(KEY in h.get("x-api-key", "") + h.get("authorization", "") for h in
               (r.headers for r in messages_server.requests))  # fmt: skip
    # ...and are nowhere in what was recorded
    store = run.execution.store
    forget_store(store)  # commit, close, and let go of the file

    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        assert {"events", "steps", "runs"} <= {t for _, t in tables}
        scanned = 0
        for schema, table in tables:
            rows = con.execute(f'SELECT CAST(COLUMNS(*) AS VARCHAR) FROM "{schema}"."{table}"').fetchall()
            text = repr(rows)
            scanned += len(rows)
            assert KEY not in text, f"the API key is in {table}"
            assert BEARER not in text, f"the bearer token is in {table}"
        assert scanned > 0
    finally:
        con.close()
    for f in tmp_path.iterdir():  # the database file and any WAL beside it
        if f.name.startswith("x.duckdb"):
            raw = f.read_bytes()
            assert KEY.encode() not in raw and BEARER.encode() not in raw, f.name
