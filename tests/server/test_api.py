"""The REST API against a real uvicorn server on 127.0.0.1 (DESIGN §2, "Serving flows")."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import flownb
from flownb.server.hooks import sign
from tests.server.conftest import TOKEN, client, wait_for, wait_for_status

ROUTES = [
    ("GET", "/api/flows", None),
    ("POST", "/api/flows/quick/runs", {"params": {}}),
    ("GET", "/api/runs", None),
    ("GET", "/api/runs/{run}", None),
    ("POST", "/api/runs/{run}/cancel", None),
    ("POST", "/api/runs/{run}/approvals/publish_ok", {"decision": "approve"}),
    ("GET", "/api/runs/{run}/events", None),
    ("GET", "/api/runs/{run}/graph.svg", None),
]


def _count_runs(db: str) -> int:
    return int(flownb.sql("SELECT count(*) AS n FROM runs", db=db)["n"][0])


def test_every_api_route_needs_the_token(serve, db: str) -> None:
    server = serve("quick", "gated")
    api = client(server.url)
    run = api.post("/api/flows/quick/runs", json={}).json()["run_id"]
    wait_for_status(api, run, {"succeeded"})
    before = _count_runs(db)
    for token in (None, "wrong-token"):
        anonymous = client(server.url, token)
        for method, path, body in ROUTES:
            r = anonymous.request(method, path.format(run=run), json=body)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"].startswith("this route needs Authorization: Bearer")
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert _count_runs(db) == before  # nothing started, nothing decided
    expected = {
        "/api/flows": 200, "/api/flows/quick/runs": 202, "/api/runs": 200, "/api/runs/{run}": 200,
        "/api/runs/{run}/cancel": 409, "/api/runs/{run}/approvals/publish_ok": 409,
        "/api/runs/{run}/events": 200, "/api/runs/{run}/graph.svg": 200,
    }
    for method, path, body in ROUTES:
        r = api.request(method, path.format(run=run), json=body)
        assert r.status_code == expected[path], (method, path, r.text)
    # the same token, as the page sends it: the session cookie after signing in
    browser = client(server.url, None)
    assert browser.post("/login", data={"token": "nope"}).headers["location"] == "/?error=1"
    signed = browser.post("/login", data={"token": TOKEN})
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    assert browser.get("/api/flows").status_code == 200
    # a change through the cookie needs the page's header, which another site's form cannot send
    assert browser.post("/api/flows/quick/runs", json={}).status_code == 401
    assert browser.post("/api/flows/quick/runs", json={}, headers={"X-Flownb-Page": "1"}).status_code == 202


def test_start_a_run_and_read_it(serve) -> None:
    api = client(serve("quick", "failing").url)
    flows = api.get("/api/flows").json()["flows"]
    assert [f["name"] for f in flows] == ["failing", "quick"]
    assert flows[1]["steps"] == [{"name": "one", "kind": "python", "after": [], "level": 0}]
    started = api.post("/api/flows/quick/runs", json={"params": {"n": 3, "who": "ana"}})
    assert started.status_code == 202
    assert set(started.json()) == {"run_id", "status"}
    run = wait_for_status(api, started.json()["run_id"], {"succeeded"})
    assert run["flow"] == "quick" and run["trigger"] == "api" and run["params"] == {"n": 3, "who": "ana"}
    assert [(s["step"], s["status"], s["attempts"]) for s in run["steps"]] == [("one", "succeeded", 1)]
    failed = wait_for_status(api, api.post("/api/flows/failing/runs").json()["run_id"], {"failed"})
    step = failed["steps"][0]
    assert step["error_type"] == "ValueError" and "no such table: orders" in step["traceback"]


def test_pages_and_filters_over_120_runs(serve, db: str) -> None:
    server = serve("quick", "failing")
    quick, failing = server.flows.get("quick").flow, server.flows.get("failing").flow
    handles = [quick.run({"i": i}) for i in range(80)] + [failing.run() for _ in range(40)]
    for h in handles:
        h.wait(120)
    api = client(server.url)
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        r = api.get("/api/runs", params={"limit": 25, **({"cursor": cursor} if cursor else {})}).json()
        seen += r["runs"]
        pages += 1
        cursor = r["next_cursor"]
        if cursor is None:
            break
    assert pages == 5 and len(seen) == 120
    assert len({r["run_id"] for r in seen}) == 120 == len({h.id for h in handles} & {r["run_id"] for r in seen})
    keys = [(r["started_at"], r["run_id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)  # newest first, and a cursor never skips or repeats
    # filters: by flow, by status (one or several), by time
    def all_of(**params) -> list[dict]:
        out, cursor = [], None
        while True:
            r = api.get("/api/runs", params={**params, "limit": 50, **({"cursor": cursor} if cursor else {})}).json()
            out += r["runs"]
            if (cursor := r["next_cursor"]) is None:
                return out
    assert {r["flow"] for r in all_of(flow="failing")} == {"failing"} and len(all_of(flow="failing")) == 40
    assert len(all_of(status="succeeded")) == 80 and len(all_of(status="failed")) == 40
    assert len(all_of(status="failed,succeeded")) == 120
    assert all_of(flow="quick", status="failed") == []
    middle = sorted(r["started_at"] for r in seen)[60]
    since = all_of(since=middle)
    until = all_of(until=middle)
    assert len(since) + len(until) == 120 and all(r["started_at"] >= middle for r in since)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert all_of(since=future) == [] and len(all_of(until=future)) == 120


def test_bad_input_is_a_clear_4xx_and_starts_nothing(serve, db: str) -> None:
    api = client(serve("quick", "gated").url)
    done = api.post("/api/flows/quick/runs").json()["run_id"]
    wait_for_status(api, done, {"succeeded"})
    before = _count_runs(db)
    cases = [
        ("POST", "/api/flows/quick/runs", {"content": b"{not json"}, 400, "not valid JSON"),
        ("POST", "/api/flows/quick/runs", {"json": [1, 2]}, 400, "JSON object"),
        ("POST", "/api/flows/quick/runs", {"json": {"params": "x"}}, 400, "params must be a JSON object"),
        ("POST", "/api/flows/quick/runs", {"json": {"parms": {}}}, 400, "unknown field 'parms'"),
        ("POST", "/api/flows/nope/runs", {"json": {}}, 404, "no flow 'nope'"),
        ("GET", "/api/runs/nope", {}, 404, "no run 'nope'"),
        ("GET", "/api/runs?limit=0", {}, 400, "limit"),
        ("GET", "/api/runs?limit=many", {}, 400, "limit"),
        ("GET", "/api/runs?status=done", {}, 400, "not a run status"),
        ("GET", "/api/runs?since=yesterday", {}, 400, "ISO 8601"),
        ("GET", "/api/runs?cursor=abc", {}, 400, "cursor"),
        ("GET", "/api/runs?order=asc", {}, 400, "unknown query parameter"),
        ("POST", f"/api/runs/{done}/approvals/publish_ok", {"json": {"decision": "maybe"}}, 400, "approve"),
        ("POST", f"/api/runs/{done}/approvals/publish_ok", {"content": b"]"}, 400, "not valid JSON"),
        ("POST", f"/api/runs/{done}/approvals/one", {"json": {"decision": "approve"}}, 409, "has ended"),
        ("POST", "/api/runs/nope/approvals/x", {"json": {"decision": "approve"}}, 404, "no run"),
        ("POST", f"/api/runs/{done}/cancel", {}, 409, "nothing to cancel"),
        ("POST", "/api/runs/nope/cancel", {}, 404, "no run"),
        ("DELETE", "/api/runs", {}, 405, "not allowed"),
        ("GET", "/api/nothing", {}, 404, "no route"),
        ("POST", "/hooks/nope", {"json": {}}, 404, "no flow"),
        ("POST", "/hooks/quick", {"content": b"{"}, 400, "not valid JSON"),
    ]
    for method, path, kwargs, status, says in cases:
        r = api.request(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.text)
        assert r.headers["content-type"] == "application/json" and says in r.json()["error"], (path, r.json())
    assert _count_runs(db) == before


def test_the_rate_limit_answers_429_with_retry_after(serve) -> None:
    api = client(serve("quick", rate=10, burst=20).url)
    statuses = []
    while 429 not in statuses:
        assert len(statuses) < 200, "never limited"
        statuses.append((r := api.get("/api/flows")).status_code)
    assert statuses.count(200) >= 20  # the burst
    assert r.json()["error"].startswith("rate limit") and r.headers["retry-after"].isdigit()
    time.sleep(int(r.headers["retry-after"]))
    assert api.get("/api/flows").status_code == 200


def _gated_run(api: httpx.Client) -> str:
    run_id = api.post("/api/flows/gated/runs", json={"params": {"n": 4}}).json()["run_id"]
    run = wait_for_status(api, run_id, {"waiting"})
    assert run["pending_approvals"] == ["publish_ok"]
    return run_id


def test_approve_and_cancel_a_run_waiting_at_a_gate(serve, db: str) -> None:
    api = client(serve("gated").url)
    approved = _gated_run(api)
    assert api.post(f"/api/runs/{approved}/approvals/prepare", json={"decision": "approve"}).status_code == 409
    r = api.post(f"/api/runs/{approved}/approvals/publish_ok", json={"decision": "approve", "comment": "checked"})
    assert r.status_code == 202 and r.json() == {"run_id": approved, "step": "publish_ok", "decision": "approved"}
    run = wait_for_status(api, approved, {"succeeded"})
    gate = run["approvals"][0]
    assert (gate["decision"], gate["comment"], gate["via"], gate["pending"]) == ("approved", "checked", "api", False)
    assert flownb.sql("SELECT via FROM approvals WHERE run_id = ?", db=db, params=[approved])["via"][0] == "api"
    again = api.post(f"/api/runs/{approved}/approvals/publish_ok", json={"decision": "reject"})
    assert again.status_code == 409

    rejected = _gated_run(api)
    api.post(f"/api/runs/{rejected}/approvals/publish_ok", json={"decision": "reject", "comment": "no"})
    assert wait_for_status(api, rejected, {"failed"})["steps"][1]["error_type"] == "ApprovalRejected"

    cancelled = _gated_run(api)
    assert api.post(f"/api/runs/{cancelled}/cancel").status_code == 202
    wait_for_status(api, cancelled, {"cancelled"})
    assert api.post(f"/api/runs/{cancelled}/cancel").status_code == 409


def _read_events(url: str, run_id: str, out: list[dict], headers: dict | None = None) -> httpx.Response:
    with client(url).stream("GET", f"/api/runs/{run_id}/events", headers=headers or {}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[len("data: "):]))
        return r


def test_server_sent_events_follow_a_run_to_its_end(serve, db: str) -> None:
    server = serve("gated")
    api = client(server.url)
    run_id = _gated_run(api)
    received: list[dict] = []
    reader = threading.Thread(target=_read_events, args=(server.url, run_id, received))
    reader.start()
    wait_for(lambda: any(e["event"] == "approval_requested" for e in received), "the gate's event")
    api.post(f"/api/runs/{run_id}/approvals/publish_ok", json={"decision": "approve"})
    reader.join(60)
    assert not reader.is_alive(), "the stream did not close when the run ended"
    assert received[-1]["event"] == "run_ended" and received[-1]["payload"]["status"] == "succeeded"
    seqs = [e["seq"] for e in received]
    assert len(seqs) == len(set(seqs))  # none twice
    stored = flownb.sql(
        "SELECT seq, event, coalesce(step, '') AS step FROM events WHERE run_id = ? ORDER BY seq", db=db, params=[run_id]
    )
    assert sorted((e["seq"], e["event"], e["step"] or "") for e in received) == [
        (int(s), e, st) for s, e, st in stored.itertuples(index=False)
    ]
    assert {"run_id", "seq", "ts", "step", "event", "payload"} == set(received[0])
    # a finished run streams whole, and a reconnect after its end is told to stop (204)
    whole: list[dict] = []
    _read_events(server.url, run_id, whole)
    assert whole == received
    late = api.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": str(received[-1]["seq"])})
    assert late.status_code == 204
    tail: list[dict] = []
    _read_events(server.url, run_id, tail, {"Last-Event-ID": str(received[-3]["seq"])})
    assert tail == received[-2:]


def test_a_stream_the_client_leaves_stops_reading(serve) -> None:
    server = serve("gated")
    api = client(server.url)
    run_id = _gated_run(api)
    with client(server.url).stream("GET", f"/api/runs/{run_id}/events") as r:
        next(line for line in r.iter_lines() if line.startswith("data: "))
    # the run still waits at its gate; the stream's reader is gone all the same
    wait_for(lambda: not any(t.name == "flownb-sse" for t in threading.enumerate()), "the stream's reader to end")
    api.post(f"/api/runs/{run_id}/cancel")


def test_webhooks_check_githubs_signature(serve, db: str) -> None:
    secret = "It's a Secret to Everybody"
    url = serve("quick", webhook_secret=secret).url
    hooks = client(url, None)  # webhooks carry no bearer token
    body = json.dumps({"action": "opened", "number": 7}).encode()
    before = _count_runs(db)
    missing = hooks.post("/hooks/quick", content=body)
    bad = hooks.post("/hooks/quick", content=body, headers={"X-Hub-Signature-256": sign("guess", body)})
    assert (missing.status_code, bad.status_code) == (401, 401)
    assert "X-Hub-Signature-256" in missing.json()["error"] and "does not match" in bad.json()["error"]
    # the signature covers the exact bytes: the same JSON re-spaced does not pass
    respaced = hooks.post("/hooks/quick", content=body.replace(b", ", b","),
                          headers={"X-Hub-Signature-256": sign(secret, body)})
    assert respaced.status_code == 401
    assert _count_runs(db) == before
    good = hooks.post("/hooks/quick", content=body, headers={
        "X-Hub-Signature-256": sign(secret, body), "X-GitHub-Event": "pull_request", "Content-Type": "application/json",
    })
    assert good.status_code == 202
    run = wait_for_status(client(url), good.json()["run_id"], {"succeeded"})
    assert run["trigger"] == "webhook" and run["params"] == {"payload": {"action": "opened", "number": 7}}


def test_webhooks_without_a_secret_take_any_json(serve) -> None:
    url = serve("quick").url
    r = httpx.post(f"{url}/hooks/quick", json=[1, "two"])
    assert r.status_code == 202
    assert wait_for_status(client(url), r.json()["run_id"], {"succeeded"})["params"] == {"payload": [1, "two"]}


@pytest.mark.slow
def test_control_a_run_another_server_owns(serve, server_process, db: str) -> None:
    """Approve and cancel through one server runs that another server's process owns (via the store)."""
    from tests.server.conftest import FLOWDEFS

    owner = client(server_process([f"{FLOWDEFS}:gated"], db).url)
    here = client(serve("gated").url)
    approved = owner.post("/api/flows/gated/runs", json={"params": {"n": 5}}).json()["run_id"]
    run = wait_for_status(here, approved, {"waiting"})
    assert run["pending_approvals"] == ["publish_ok"] and [a["step"] for a in run["approvals"]] == ["publish_ok"]
    assert here.post(f"/api/runs/{approved}/approvals/publish_ok", json={"decision": "approve"}).status_code == 202
    assert wait_for_status(here, approved, {"succeeded"})["approvals"][0]["via"] == "api"

    cancelled = owner.post("/api/flows/gated/runs").json()["run_id"]
    wait_for_status(here, cancelled, {"waiting"})
    assert here.post(f"/api/runs/{cancelled}/cancel").status_code == 202
    run = wait_for_status(here, cancelled, {"cancelled"})
    assert [a["step"] for a in run["approvals"]] == ["publish_ok"]  # the command is no approval
    events: list[dict] = []
    _read_events(owner.base_url.__str__(), cancelled, events)
    assert events[-1]["event"] == "run_ended"


def test_a_busy_store_is_503_with_retry_after_not_a_500(serve, monkeypatch) -> None:
    server = serve("quick")
    state = server.app.state.flownb

    def locked(run_id: str) -> dict:
        raise flownb.StoreLocked(state.store.path, 4242, 30.0, doing="running a flow")

    monkeypatch.setattr(state.runs, "detail", locked)
    r = client(server.url).get("/api/runs/anything")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "4242" in r.json()["error"]
