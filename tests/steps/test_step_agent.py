"""The agent kind: the real anthropic SDK against a local Messages API server."""

from __future__ import annotations

import anthropic
import pytest

import flownb
from flownb.errors import FlowDefinitionError
from flownb.steps.agent import estimate_cost, parse_json_reply
from tests.servers import MessagesServer, Reply
from tests.steps.helpers import attempts, events, recorded_inputs, wait_until


def test_reply_text_metrics_and_request(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    messages_server.script.append(Reply(text="Paris is the capital of France.", usage=(12, 8)))
    flow.agent("answer", "Capital of {{ params.country }}?", system="Be brief.", temperature=0.2, max_tokens=50)
    run = flow.run(params={"country": "France"}).wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["answer"] == "Paris is the capital of France."
    [row] = attempts(run, "answer")
    assert (row["tokens_in"], row["tokens_out"]) == (12, 8)
    assert row["cost_usd"] == pytest.approx(estimate_cost("claude-sonnet-test", 12, 8))
    assert row["stdout"] == "Paris is the capital of France."  # streamed into the log
    [sent] = messages_server.requests
    body = sent.json()
    assert body["model"] == "claude-sonnet-test" and body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert (body["system"], body["temperature"], body["max_tokens"]) == ("Be brief.", 0.2, 50)
    assert "test-key-not-secret" in (sent.headers.get("x-api-key", "") + sent.headers.get("authorization", ""))
    [inputs] = recorded_inputs(run, "answer")
    assert inputs["prompt"] == "Capital of France?" and inputs["model"] == "claude-sonnet-test"


def test_model_option_overrides_the_environment(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    flow.step(name="a", kind="agent", prompt="hi", model="claude-haiku-test")
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert messages_server.requests[0].json()["model"] == "claude-haiku-test"
    assert run.outputs["a"] == "You said: hi"


def test_json_reply_in_a_fence(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    messages_server.script.append(Reply(text='```json\n{"city": "Paris", "pop": 2.1}\n```'))
    flow.agent("facts", "Facts as JSON", json=True)
    run = flow.run().wait(60)
    assert run.outputs["facts"] == {"city": "Paris", "pop": 2.1}


def test_reply_that_is_not_json_fails_clearly(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    messages_server.script.append(Reply(text="Sure! Here is the JSON you asked for: {oops"))
    flow.agent("facts", "Facts as JSON", json=True)
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "facts")
    assert row["error_type"] == "AgentError" and "not valid JSON" in row["error"] and "Sure!" in row["error"]


@pytest.mark.parametrize("status", [529, 500, 429])
def test_overload_and_server_errors_are_retried(
    flow: flownb.Flow, messages_server: MessagesServer, status: int
) -> None:
    messages_server.script.append(Reply(status=status, error_type="overloaded_error"))
    flow.agent("a", "hi", retries=2, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    rows = attempts(run, "a")
    assert [r["status"] for r in rows] == ["failed", "succeeded"]
    assert f"answered {status}" in rows[0]["error"]


def test_retry_after_is_honoured(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    messages_server.script.append(Reply(status=429, error_type="rate_limit_error", headers={"Retry-After": "1"}))
    flow.agent("a", "hi", retries=1, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    [retry] = events(run, "step_retrying", "a")
    assert retry["delay_s"] >= 1.0


def test_error_event_in_the_stream_is_retried(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    messages_server.script.append(Reply(text="partial answer", stream_error=True))
    flow.agent("a", "hi", retries=1, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert [r["status"] for r in attempts(run, "a")] == ["failed", "succeeded"]


def test_bad_request_is_not_retried(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    messages_server.script.append(Reply(status=400, error_type="invalid_request_error"))
    flow.agent("a", "hi", retries=3, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "a")
    assert "400" in row["error"] and "invalid_request_error" in row["error"]


def test_missing_key_names_the_variable(
    flow: flownb.Flow, messages_server: MessagesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    flow.agent("a", "hi", retries=2, retry_delay=0)
    run = flow.run().wait(60)
    [row] = attempts(run, "a")
    assert "ANTHROPIC_API_KEY" in row["error"]
    assert not messages_server.requests


def test_missing_model_fails_clearly(
    flow: flownb.Flow, messages_server: MessagesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWNB_MODEL")
    flow.agent("a", "hi")
    run = flow.run().wait(60)
    [row] = attempts(run, "a")
    assert "FLOWNB_MODEL" in row["error"] and "model=" in row["error"]


def test_timeout_stops_a_hanging_stream_after_streaming_what_came(
    flow: flownb.Flow, messages_server: MessagesServer
) -> None:
    messages_server.script.append(Reply(text="The first words and then silence", hang=True))
    flow.agent("a", "hi", timeout=1)
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "a")
    assert row["error_type"] == "StepTimeout"
    assert row["stdout"] == "The fir"  # the first delta reached the log before the timeout


def test_cancel_stops_the_call(flow: flownb.Flow, messages_server: MessagesServer) -> None:
    messages_server.script.append(Reply(hang=True))
    flow.agent("a", "hi")
    run = flow.run()
    wait_until(lambda: messages_server.requests, "the request to arrive")
    run.cancel()
    run.wait(60)
    assert run.status == "cancelled"
    assert attempts(run, "a")[0]["status"] == "cancelled"


def test_definition_errors(flow: flownb.Flow) -> None:
    with pytest.raises(FlowDefinitionError, match="prompt"):
        flow.agent("a", "")
    with pytest.raises(FlowDefinitionError, match="max_tokens"):
        flow.agent("b", "hi", max_tokens=0)
    with pytest.raises(FlowDefinitionError, match="temperature"):
        flow.agent("c", "hi", temperature=3)


def test_helpers() -> None:
    assert parse_json_reply('```\n[1, 2]\n```') == [1, 2]
    assert parse_json_reply(' {"a": 1} ') == {"a": 1}
    with pytest.raises(ValueError):
        parse_json_reply("no")
    assert estimate_cost("claude-sonnet-4-5", 1_000_000, 0) == 3.0
    assert estimate_cost("mystery-model", 10, 10) is None


def test_the_server_also_answers_plain_requests(messages_server: MessagesServer) -> None:
    """The non-streaming path of the test server, for other suites using the SDK directly."""
    messages_server.script.append(Reply(text="plain", usage=(3, 1)))
    client = anthropic.Anthropic(api_key="k", base_url=messages_server.url, max_retries=0)
    with client:
        message = client.messages.create(model="claude-sonnet-test", max_tokens=5,
                                         messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert message.content[0].type == "text" and message.content[0].text == "plain"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 1)
