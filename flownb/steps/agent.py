"""Agent steps: one message to Claude with the anthropic SDK's async client.

Guarantees:

- The API key is read from ``ANTHROPIC_API_KEY`` when the attempt runs and is
  handed to the SDK only; it is never part of the options, the recorded
  inputs, the log or an error message. ``ANTHROPIC_BASE_URL`` applies.
- The values of secret-looking params rendered into the prompt are scrubbed
  from the recorded prompt, log and errors (the API receives the real prompt).
- The reply streams into the step's log as it is generated.
- ``tokens_in``, ``tokens_out`` and ``cost_usd`` (an estimate from public list
  prices; None for a model the table does not know) are recorded on the attempt.
- The SDK's own retries are off: 408, 429, 529 and other 5xx answers and
  connection errors raise errors that the engine retries under the step's
  ``retries=``, waiting at least the server's ``Retry-After``; so every try is
  an attempt row in the store. Other errors (400, 401...) are never retried.
"""

from __future__ import annotations

import json as jsonlib
import os
import re
from collections.abc import Mapping
from typing import Any

from flownb.engine.context import StepContext
from flownb.errors import FlowDefinitionError
from flownb.model import templates
from flownb.steps.http import _retry_after
from flownb.steps.registry import register_kind

API_KEY_ENV = "ANTHROPIC_API_KEY"
MODEL_ENV = "FLOWNB_MODEL"
DEFAULT_TIMEOUT = 600.0
MAX_RECORDED_PROMPT = 20_000
#: USD per million tokens (input, output), matched by substring of the model name
PRICES: tuple[tuple[str, float, float], ...] = (
    ("opus-4-5", 5.0, 25.0),
    ("opus-4-6", 5.0, 25.0),
    ("opus", 15.0, 75.0),
    ("sonnet", 3.0, 15.0),
    ("haiku-3", 0.25, 1.25),
    ("haiku", 1.0, 5.0),
)
_RETRY_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


class AgentError(Exception):
    """An agent attempt failed; ``retryable`` and ``retry_after`` steer the engine."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def estimate_cost(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """USD for a call at list prices, or None when the model is not in :data:`PRICES`."""
    low = model.lower()
    for key, p_in, p_out in PRICES:
        if key in low:
            return round((tokens_in * p_in + tokens_out * p_out) / 1_000_000, 8)
    return None


def parse_json_reply(text: str) -> Any:
    """The JSON value of a reply, tolerating a Markdown code fence around it."""
    fenced = _FENCE.match(text)
    return jsonlib.loads(fenced.group("body") if fenced else text)


class AgentKind:
    name = "agent"
    main_option: str | None = "prompt"
    required: tuple[str, ...] = ("prompt",)
    optional: Mapping[str, Any] = {
        "model": None, "system": None, "max_tokens": 1024, "temperature": None, "json": False,
    }  # fmt: skip

    def references(self, options: Mapping[str, Any]) -> set[str]:
        keys = ("prompt", "system", "model")
        return set().union(*(templates.value_references(options.get(k)) for k in keys))

    def validate(self, step: str, options: dict[str, Any]) -> None:
        where = f"step {step!r} (agent)"
        if not isinstance(options.get("prompt"), str) or not options["prompt"].strip():
            raise FlowDefinitionError(f"{where}: prompt must be a non-empty string")
        for opt in ("model", "system"):
            if options.get(opt) is not None and not isinstance(options[opt], str):
                raise FlowDefinitionError(f"{where}: {opt} must be a string")
        tokens = options.get("max_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            raise FlowDefinitionError(f"{where}: max_tokens must be a positive integer")
        temp = options.get("temperature")
        if temp is not None and (not isinstance(temp, int | float) or not 0 <= temp <= 1):
            raise FlowDefinitionError(f"{where}: temperature must be between 0 and 1")
        if not isinstance(options.get("json"), bool):
            raise FlowDefinitionError(f"{where}: json must be True or False")

    async def execute(self, ctx: StepContext) -> Any:
        o = ctx.options
        prompt = _text(ctx.render(o["prompt"]))
        system = _text(ctx.render(o["system"])) if o["system"] is not None else None
        model = _text(ctx.render(o["model"])) if o["model"] is not None else os.environ.get(MODEL_ENV, "")
        ctx.recorded_inputs = {
            "model": model or None, "system": system, "prompt": prompt[:MAX_RECORDED_PROMPT],
            "max_tokens": o["max_tokens"], "temperature": o["temperature"], "json": o["json"],
        }  # fmt: skip
        if not model:
            raise AgentError(
                f"step {ctx.step!r}: no model; pass model='claude-...' or set the {MODEL_ENV} environment variable",
                retryable=False,
            )
        key = os.environ.get(API_KEY_ENV)
        ctx.secrets.add(key)  # an SDK message that quotes it is recorded without it
        if not key:
            raise AgentError(
                f"step {ctx.step!r}: the {API_KEY_ENV} environment variable is not set; set it to an Anthropic "
                "API key (it is read when the step runs and never stored)",
                retryable=False,
            )
        request: dict[str, Any] = {
            "model": model, "max_tokens": o["max_tokens"],
            "messages": [{"role": "user", "content": prompt}],
        }  # fmt: skip
        if system is not None:
            request["system"] = system
        if o["temperature"] is not None:
            # this SDK's typed parameters no longer include temperature: send it as a body field
            request["extra_body"] = {"temperature": o["temperature"]}
        text = await _call(ctx, key, request)
        if not o["json"]:
            return text
        try:
            return parse_json_reply(text)
        except ValueError as exc:
            raise AgentError(
                f"step {ctx.step!r}: json=True but the reply is not valid JSON ({exc}); the reply begins "
                f"{text[:200]!r}. Ask for JSON only in the prompt, or use json=False",
                retryable=True,  # another sample may well be valid JSON
            ) from None


async def _call(ctx: StepContext, key: str, request: dict[str, Any]) -> str:
    """Stream one message; record usage; map SDK errors to retry decisions."""
    import anthropic  # the SDK is large: imported when an agent step first runs

    timeout = ctx.timeout or DEFAULT_TIMEOUT
    try:
        client = anthropic.AsyncAnthropic(api_key=key, max_retries=0, timeout=timeout)
        async with client, client.messages.stream(**request) as stream:
            async for piece in stream.text_stream:
                ctx.print(piece)
            message = await stream.get_final_message()
    except anthropic.APIStatusError as exc:
        raise _status_error(ctx, exc) from None
    except anthropic.APIConnectionError as exc:  # includes APITimeoutError
        raise AgentError(f"step {ctx.step!r}: cannot reach the Anthropic API: {exc}", retryable=True) from None
    usage = message.usage
    tokens_in = int(usage.input_tokens or 0) + int(getattr(usage, "cache_creation_input_tokens", 0) or 0) + int(
        getattr(usage, "cache_read_input_tokens", 0) or 0
    )
    tokens_out = int(usage.output_tokens or 0)
    ctx.metrics.update(
        tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=estimate_cost(request["model"], tokens_in, tokens_out)
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    if message.stop_reason == "max_tokens":
        ctx.print(f"\n[flownb: the reply stopped at max_tokens={request['max_tokens']}]\n", "stderr")
    return text


def _status_error(ctx: StepContext, exc: Any) -> AgentError:
    status = int(getattr(exc, "status_code", 0) or 0)
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    etype = error.get("type") if isinstance(error, dict) else None
    detail = error.get("message") if isinstance(error, dict) else None
    retryable = status in (408, 409, 429) or status >= 500 or etype in _RETRY_ERROR_TYPES
    headers = getattr(getattr(exc, "response", None), "headers", None)
    retry_after = _retry_after(headers.get("retry-after")) if headers is not None else None
    hint = ""
    if status == 401:
        hint = f"; check {API_KEY_ENV}"
    elif status == 404:
        hint = "; check the model name"
    return AgentError(
        f"step {ctx.step!r}: the Anthropic API answered {status} {etype or ''}: {detail or exc}{hint}".replace(
            "  ", " "
        ),
        retryable=retryable, retry_after=retry_after,
    )  # fmt: skip


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return jsonlib.dumps(value, default=str)


register_kind(AgentKind())
