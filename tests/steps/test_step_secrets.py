"""Secrets never reach the store: a canary key and header, searched for everywhere."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

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
    _assert_nowhere(run, tmp_path / "x.duckdb", {"the API key": KEY, "the bearer token": BEARER})


def _assert_nowhere(run: Any, db: Path, canaries: dict[str, str]) -> None:
    """No canary in any table of the store, nor in the raw bytes of its files, nor URL-encoded."""
    encoded = {f"{what} (URL-encoded as {form!r})": form for what, c in canaries.items()
               for form in {quote(c), quote(c, safe="/+"), quote_plus(c)} if form != c}  # fmt: skip
    canaries = {**canaries, **encoded}
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
            for what, canary in canaries.items():
                assert canary not in text, f"{what} is in {table}"
        assert scanned > 0
    finally:
        con.close()
    for f in db.parent.iterdir():  # the database file and any WAL beside it
        if f.name.startswith(db.name):
            raw = f.read_bytes()
            for what, canary in canaries.items():
                assert canary.encode() not in raw, f"{what} is in the file {f.name}"


# one canary per route by which a secret's value could reach the store
PASSWORD = "CANARY-pw-0c81f2"  # a secret param inside a rendered shell command
PROMPT_TOKEN = "CANARY-prompt-9a3e77"  # a secret param inside a rendered agent prompt
PATH_KEY = "CANARY pathkey+44b1d0"  # a secret param in a rendered URL's path (sent percent-encoded)
QUERY_TOKEN = "CANARY-query-5e0c2a"  # ?token= written in a URL
FAILING_TOKEN = "CANARY-failing-71fd3c"  # ?access_token= in a URL that cannot connect
STEP_ENV = "CANARY-stepenv-3b9e18"  # a secret-looking variable of a shell step's env=
AMBIENT = "CANARY-ambient-d2a6c4"  # a secret-looking variable of the process environment
PY_KEY = "CANARY-pykey-8e2f90"  # a secret param in a python step's exception


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_secret_values_are_scrubbed_from_everything_recorded(
    tmp_path: Path, http_server: HttpServer, messages_server: MessagesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWNB_CANARY_SECRET", AMBIENT)
    db = tmp_path / "x.duckdb"
    flow = flownb.Flow("by_value", db=str(db))
    keep = {"on_failure": "continue"}
    # shell: the password in the command, its stderr, its error; a step env secret; an ambient one
    flow.shell("connect", "echo \"login with {{ params.db_password }}\" >&2; echo \"$SERVICE_TOKEN $FLOWNB_CANARY_SECRET\""
               " >&2; exit 3", env={"SERVICE_TOKEN": STEP_ENV}, **keep)  # fmt: skip
    # agent: the token in the recorded prompt
    messages_server.script.append(Reply(text="ok"))
    flow.agent("ask", "Call the API with token {{ params.access_token }} and summarise")
    # http: a secret key in the path of a URL that answers 404 (error, traceback, retry event)
    flow.http("by_path", http_server.url + "/nope/{{ params.secret_key }}", retries=1, retry_delay=0, **keep)
    # http: ?token= written in the URL (recorded inputs)
    flow.http("by_query", f"{http_server.url}/json?token={QUERY_TOKEN}&page=2")
    # http: an access token in a URL that cannot connect
    flow.http("unreachable", f"http://127.0.0.1:{_closed_port()}/x?access_token={FAILING_TOKEN}", **keep)

    @flow.step(on_failure="continue")
    def python_fails(params: dict[str, Any]) -> None:
        print("using", params["api_key"], os.environ["FLOWNB_CANARY_SECRET"])
        raise RuntimeError(f"the service refused key {params['api_key']}")

    params = {"db_password": PASSWORD, "access_token": PROMPT_TOKEN, "secret_key": PATH_KEY, "api_key": PY_KEY}
    run = flow.run(params=params).wait(60)
    assert run.outputs["ask"] == "ok" and run.outputs["by_query"]["status"] == 200
    failed = {s for s, st in run.step_status.items() if st == "failed"}
    assert failed == {"connect", "by_path", "unreachable", "python_fails"}

    # the secrets were really used...
    assert any(quote(PATH_KEY, safe="/+") in r.path for r in http_server.requests)
    assert any(QUERY_TOKEN in r.path for r in http_server.requests)
    assert PROMPT_TOKEN in json.dumps(messages_server.requests[-1].json())
    # ...the failures say what happened, with the secrets blanked out...
    rows = {r["step"]: r for r in run.steps.to_dict("records")}
    assert "login with [redacted]" in rows["connect"]["stderr"]
    assert "[redacted]" in rows["by_path"]["error"] and "[redacted]" in rows["python_fails"]["traceback"]
    # ...and none of them is anywhere in what was recorded
    _assert_nowhere(run, db, {
        "the shell password": PASSWORD, "the prompt token": PROMPT_TOKEN, "the URL path key": PATH_KEY,
        "the ?token=": QUERY_TOKEN, "the failing URL's token": FAILING_TOKEN, "the step env secret": STEP_ENV,
        "the ambient env secret": AMBIENT, "the python step's key": PY_KEY,
    })  # fmt: skip


def test_the_working_directory_is_not_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PWD's name matches "pwd" (a password's short name), SSH_AUTH_SOCK's and XAUTHORITY's
    # "auth": their values are paths, which logs and tracebacks are full of
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    monkeypatch.setenv("XAUTHORITY", str(tmp_path / ".Xauthority"))
    monkeypatch.setenv("FLOWNB_CANARY_SECRET", AMBIENT)  # still scrubbed
    flow = flownb.Flow("paths", db=":memory:")

    @flow.step
    def read() -> None:
        print("reading", os.path.join(os.getcwd(), "data.csv"), os.environ["FLOWNB_CANARY_SECRET"])
        raise FileNotFoundError(f"no data.csv in {os.getcwd()}")

    run = flow.run().wait(60)
    row = run.steps.to_dict("records")[0]
    assert row["stdout"] == f"reading {tmp_path / 'data.csv'} [redacted]\n"
    assert row["error"] == f"no data.csv in {tmp_path}"
