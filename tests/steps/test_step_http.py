"""The http kind against a real threaded HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

import flownb
from flownb.errors import FlowDefinitionError
from flownb.steps.http import parse_http_request
from tests.servers import HttpServer
from tests.steps.helpers import attempts, events, recorded_inputs, wait_until


def test_get_json_and_text(flow: flownb.Flow, http_server: HttpServer) -> None:
    flow.http("data", f"{http_server.url}/json")
    flow.step(name="page", kind="http", url=f"{http_server.url}/text")
    flow.http("odd", f"{http_server.url}/notjson")
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    data = run.outputs["data"]
    assert data["status"] == 200 and data["json"] == {"hello": "world"}
    assert data["headers"]["content-type"] == "application/json"
    assert run.outputs["page"]["text"] == "hello" and "json" not in run.outputs["page"]
    assert run.outputs["odd"]["text"] == "{not json"  # labelled JSON but is not: the text
    [row] = attempts(run, "data")
    assert row["status"] == "succeeded" and row["kind"] == "http"


def test_post_with_templates_headers_params_and_json(flow: flownb.Flow, http_server: HttpServer) -> None:
    @flow.step
    def user() -> dict[str, object]:
        return {"id": 7, "name": "ada"}

    flow.http(
        "create", "{{ params.base }}/echo", method="POST",
        headers={"Authorization": "Bearer {{ params.token }}", "X-Trace": "t-{{ user.id }}"},
        params={"q": "{{ user.name }}", "api_key": "k123"},
        json={"user": "{{ user }}", "n": "{{ user.id }}"},
    )  # fmt: skip
    flow.http("raw", f"{http_server.url}/echo", method="PUT", body="id={{ user.id }}")
    run = flow.run(params={"base": http_server.url, "token": "s3cret"}).wait(60)
    assert run.status == "succeeded", run.error
    echoed = run.outputs["create"]["json"]
    assert echoed["method"] == "POST" and echoed["path"] == "/echo?q=ada&api_key=k123"
    assert echoed["headers"]["authorization"] == "Bearer s3cret"  # sent for real
    assert echoed["headers"]["x-trace"] == "t-7"
    import json

    assert json.loads(echoed["body"]) == {"user": {"id": 7, "name": "ada"}, "n": 7}  # values keep their types
    assert run.outputs["raw"]["json"]["body"] == "id=7"
    [inputs] = recorded_inputs(run, "create")
    assert inputs["headers"] == {"Authorization": "[redacted]", "X-Trace": "t-7"}
    assert inputs["params"] == {"q": "ada", "api_key": "[redacted]"}
    assert "s3cret" not in json.dumps(inputs)


def test_client_error_fails_without_retry(flow: flownb.Flow, http_server: HttpServer) -> None:
    flow.http("missing", f"{http_server.url}/status/404", retries=3, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "missing")  # a 404 will not heal: one attempt only
    assert row["error_type"] == "HttpError" and "answered 404" in row["error"]


def test_5xx_is_retried_until_it_succeeds(flow: flownb.Flow, http_server: HttpServer) -> None:
    flow.http("flaky", f"{http_server.url}/flaky/a?fail=2&status=503", retries=3, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert [r["status"] for r in attempts(run, "flaky")] == ["failed", "failed", "succeeded"]
    assert run.outputs["flaky"]["json"] == {"ok": True, "calls": 3}


def test_429_honours_retry_after(flow: flownb.Flow, http_server: HttpServer) -> None:
    flow.http("limited", f"{http_server.url}/flaky/b?fail=1&status=429&retry_after=1", retries=1, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    [retry] = events(run, "step_retrying", "limited")
    assert retry["delay_s"] >= 1.0  # the engine waited what the server asked, not retry_delay=0


def test_transport_error_is_retried_then_fails(flow: flownb.Flow) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flow.http("down", f"http://127.0.0.1:{port}/", retries=1, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "failed"
    rows = attempts(run, "down")
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert "ConnectError" in rows[-1]["error"]


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/x", "http://", "{{ params.url }}"])
def test_bad_url_fails_clearly_and_is_not_retried(flow: flownb.Flow, url: str) -> None:
    flow.http("bad", url, retries=2, retry_delay=0)
    run = flow.run(params={"url": "http://[::1"}).wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "bad")
    assert "URL" in row["error"]


def test_redirects_are_off_unless_asked(flow: flownb.Flow, http_server: HttpServer) -> None:
    target = f"{http_server.url}/json"
    flow.http("off", f"{http_server.url}/redirect?to={target}", on_failure="continue")
    flow.http("seen", f"{http_server.url}/redirect?to={target}", expect=[301, 302])
    flow.http("on", f"{http_server.url}/redirect?to={target}", follow_redirects=True)
    run = flow.run().wait(60)
    assert run.outputs["seen"]["status"] == 302
    assert run.outputs["on"]["json"] == {"hello": "world"}
    [off] = attempts(run, "off")
    assert off["status"] == "failed" and "answered 302" in off["error"]


def test_allow_hosts(flow: flownb.Flow, http_server: HttpServer) -> None:
    port = http_server.port
    flow.http("ok", f"{http_server.url}/json", allow_hosts=["127.0.0.1"])
    flow.http("refused", f"http://localhost:{port}/json", allow_hosts=["127.0.0.1"], on_failure="continue")
    # a redirect to a host outside the list is refused before it is sent
    flow.http("hop", f"{http_server.url}/redirect?to=http://localhost:{port}/json", follow_redirects=True,
              allow_hosts=["127.0.0.1"], on_failure="continue")
    run = flow.run().wait(60)
    assert run.outputs["ok"]["status"] == 200
    assert "not in allow_hosts" in attempts(run, "refused")[0]["error"]
    assert "not in allow_hosts" in attempts(run, "hop")[0]["error"]
    assert not [r for r in http_server.requests if r.headers.get("host", "").startswith("localhost")]


def test_response_size_cap(flow: flownb.Flow, http_server: HttpServer) -> None:
    flow.http("small", f"{http_server.url}/bytes/1000", max_bytes=1000)
    flow.http("declared", f"{http_server.url}/bytes/1001", max_bytes=1000, on_failure="continue")
    flow.http("streamed", f"{http_server.url}/stream/300000", max_bytes=100000, on_failure="continue")
    run = flow.run().wait(60)
    assert len(run.outputs["small"]["text"]) == 1000
    assert "over max_bytes=1000" in attempts(run, "declared")[0]["error"]
    assert "over max_bytes=100000" in attempts(run, "streamed")[0]["error"]


def test_timeout_stops_the_request(flow: flownb.Flow, http_server: HttpServer) -> None:
    flow.http("slow", f"{http_server.url}/sleep/60", timeout=1)
    run = flow.run().wait(60)
    assert run.status == "failed"
    assert attempts(run, "slow")[0]["error_type"] == "StepTimeout"


def test_cancel_stops_the_request(flow: flownb.Flow, http_server: HttpServer) -> None:
    flow.http("slow", f"{http_server.url}/sleep/60")
    run = flow.run()
    wait_until(lambda: http_server.requests, "the request to arrive")
    run.cancel()
    run.wait(60)
    assert run.status == "cancelled"
    assert attempts(run, "slow")[0]["status"] == "cancelled"


def test_definition_errors(flow: flownb.Flow) -> None:
    with pytest.raises(FlowDefinitionError, match="method"):
        flow.http("a", "http://x/", method="FETCH")
    with pytest.raises(FlowDefinitionError, match="not both"):
        flow.http("b", "http://x/", json={"a": 1}, body="a")
    with pytest.raises(FlowDefinitionError, match="expect"):
        flow.http("c", "http://x/", expect="2xx")
    with pytest.raises(FlowDefinitionError, match="allow_hosts"):
        flow.http("d", "http://x/", allow_hosts="x")
    with pytest.raises(FlowDefinitionError, match="unknown option"):
        flow.http("e", "http://x/", data="a")


def test_parse_http_request_full_form() -> None:
    text = """# create a user
POST https://api.example.com/users?x=1 HTTP/1.1
    &y={{ params.y }}
Authorization: Bearer {{ params.token }}
Content-Type: application/json

{"name": "{{ params.name }}",
 "tags": []}
"""
    assert parse_http_request(text) == {
        "method": "POST",
        "url": "https://api.example.com/users?x=1&y={{ params.y }}",
        "headers": {"Authorization": "Bearer {{ params.token }}", "Content-Type": "application/json"},
        "body": '{"name": "{{ params.name }}",\n "tags": []}',
    }


def test_parse_http_request_short_forms_and_errors() -> None:
    assert parse_http_request("https://example.com/") == {"method": "GET", "url": "https://example.com/"}
    assert parse_http_request("\n// c\ndelete http://h/x\r\nX-A: 1\r\n") == {
        "method": "DELETE", "url": "http://h/x", "headers": {"X-A": "1"}}
    with pytest.raises(ValueError, match="request line"):
        parse_http_request("# only a comment\n")
    with pytest.raises(ValueError, match="header"):
        parse_http_request("GET http://h/\nnot a header\n")
    with pytest.raises(ValueError, match="request line"):
        parse_http_request("GET http://h/ extra words")


def test_parsed_request_runs_as_a_step(flow: flownb.Flow, http_server: HttpServer) -> None:
    who = "{{ params.who }}"
    options = parse_http_request(f"POST {http_server.url}/echo\nX-Who: {who}\n\nhello {who}")
    flow.step(name="req", kind="http", **options)
    run = flow.run(params={"who": "ada"}).wait(60)
    echoed = run.outputs["req"]["json"]
    assert echoed["headers"]["x-who"] == "ada" and echoed["body"] == "hello ada"


def test_http_file_form_keeps_template_tags_with_spaces_whole() -> None:
    from flownb.steps.http import parse_http_request

    assert parse_http_request("GET {{ params.base }}/users?x={{ params.x | default(1) }} HTTP/1.1\nAccept: json") == {
        "method": "GET",
        "url": "{{ params.base }}/users?x={{ params.x | default(1) }}",
        "headers": {"Accept": "json"},
    }
