"""What a step kind sees while it runs one attempt, and what must never be recorded of it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from flownb.executors.capture import StepLog
from flownb.model import templates
from flownb.model.spec import StepSpec

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution
    from flownb.model.flow import FlowDefinition

REDACTED = "[redacted]"
_SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie")


_SECRET_WORDS = ("token", "secret", "key", "auth", "password", "passwd", "credential", "signature")
#: names that are secrets only when they are the whole name (``sig=`` in a signed URL)
_SECRET_EXACT = frozenset({"sig", "pwd", "pass"})
#: the shortest value scrubbed: shorter ones would blank out ordinary words and numbers
MIN_SECRET_CHARS = 4
#: the shortest value of a secret-looking variable of the process environment scrubbed
#: (names like KEYBOARD match too: their short values are left alone)
MIN_AMBIENT_SECRET_CHARS = 8
_NOT_SECRETS = frozenset({"true", "false", "none", "null", "yes", "no"})
#: variables of a shell or desktop session whose names look secret (``pwd``, ``auth``) but
#: whose values are the working directory or the path of a socket or file: scrubbing PWD
#: blanked every path under the working directory out of logs, errors and tracebacks
_SESSION_PATHS = frozenset({"PWD", "SSH_AUTH_SOCK", "XAUTHORITY"})
_URL_SAFE = "/!$&'()*+,;=:@~"


def is_secret_name(name: str) -> bool:
    """A header, parameter, query parameter, variable or option name that suggests a credential."""
    low = name.lower()
    return low in _SECRET_HEADERS or low in _SECRET_EXACT or any(w in low for w in _SECRET_WORDS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to record: credentials replaced by ``[redacted]``."""
    return {k: REDACTED if is_secret_name(k) else v for k, v in headers.items()}


def redact_params(value: Any) -> Any:
    """Run parameters safe to record: values under secret-looking keys are redacted.

    The run itself gets the real values; only what is written to the store changes.
    """
    if isinstance(value, Mapping):
        return {k: REDACTED if isinstance(k, str) and is_secret_name(k) else redact_params(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_params(v) for v in value]
    return value


class Secrets:
    """The secret values of one run, scrubbed by value from everything it records.

    Guarantee: once a value is added, no event recorded after it (errors,
    tracebacks, logs, recorded inputs: rendered commands, prompts and URLs)
    holds it, nor its URL-encoded, ``repr`` or JSON-escaped forms; each becomes
    ``[redacted]``. Outputs are data: they are stored as the step returned them.
    The values come from the run's secret-looking params, the process's
    secret-looking environment variables, and what each step kind adds before
    it records anything (headers, URL query parameters and user info, a step's
    ``env=``).
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Secrets:
        """The values of the secret-looking variables of the environment (``os.environ``)."""
        secrets = cls()
        for name, value in (os.environ if environ is None else environ).items():
            if name not in _SESSION_PATHS and is_secret_name(name):
                secrets.add(value, min_chars=MIN_AMBIENT_SECRET_CHARS)
        return secrets

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, value: Any, *, min_chars: int = MIN_SECRET_CHARS) -> None:
        """Scrub ``value`` (a string or number) from what is recorded from now on."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return
        text = str(value)
        if len(text) < min_chars or text.strip().lower() in _NOT_SECRETS:
            return
        # as a URL's path or query carries it (httpx leaves RFC 3986's sub-delimiters as they
        # are), as a form or a message quotes it, as JSON escapes it
        forms = {text, quote(text, safe=""), quote(text, safe="/"), quote(text, safe=_URL_SAFE), quote_plus(text),
                 repr(text)[1:-1], json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}  # fmt: skip
        with self._lock:
            new = {f for f in forms if len(f) >= min_chars} - self._values
            if new:
                self._values |= new
                self._pattern = None

    def add_all(self, values: Iterable[Any]) -> None:
        for value in values:
            self.add(value)

    def add_params(self, value: Any) -> None:
        """Every value under a secret-looking key, at any depth of params."""
        if isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(k, str) and is_secret_name(k):
                    self.add_all(_leaves(v))
                else:
                    self.add_params(v)
        elif isinstance(value, list | tuple):
            for v in value:
                self.add_params(v)

    def add_named(self, pairs: Mapping[str, Any]) -> None:
        """Values of secret-looking names: headers, query parameters, environment variables.
        A header such as ``Bearer abc`` adds ``abc`` too, for messages that quote the token alone."""
        for name, value in pairs.items():
            if not is_secret_name(str(name)):
                continue
            self.add(value)
            if isinstance(value, str) and " " in value.strip():
                self.add(value.strip().split(None, 1)[1])

    def add_url(self, url: str) -> None:
        """The secret-looking query parameters of a URL, and the password of its user info."""
        try:
            parts = urlsplit(url)
            self.add_named(dict(parse_qsl(parts.query, keep_blank_values=True)))
            if parts.password:
                self.add(unquote(parts.password))
        except ValueError:
            return  # not a URL the step can send either; nothing to learn from it

    def scrub(self, text: str) -> str:
        pattern = self._compiled()
        return text if pattern is None else pattern.sub(REDACTED, text)

    def scrub_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """An event's payload with every string scrubbed, except its outputs (data, kept exact)
        and the fields the engine makes itself; the payload itself when nothing changed."""
        pattern = self._compiled()
        if pattern is None:
            return payload
        out: dict[str, Any] | None = None
        for key, value in payload.items():
            if key in _ENGINE_FIELDS or not isinstance(value, str | dict | list | tuple):
                continue
            new = _scrubbed(value, pattern)
            if new is not value:
                if out is None:
                    out = dict(payload)
                out[key] = new
        return payload if out is None else out

    def _compiled(self) -> re.Pattern[str] | None:
        pattern = self._pattern  # the common case, without the lock: set once per new value
        if pattern is not None or not self._values:
            return pattern
        with self._lock:
            if self._pattern is None and self._values:
                # longest first: a value that contains another is blanked whole
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            return self._pattern


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


#: payload fields the engine writes itself (hashes, statuses, numbers): no user text in them;
#: ``outputs`` are data, stored exactly as the step returned them
_ENGINE_FIELDS = frozenset({"outputs", "input_hash", "output_hash", "code_hash", "flow_hash", "kind", "status",
                            "attempt", "level", "started_at", "duration_ms", "cached", "pid", "host"})  # fmt: skip


def _scrubbed(value: Any, pattern: re.Pattern[str]) -> Any:
    """``value`` with secrets blanked out of its strings; the same object when it holds none."""
    if isinstance(value, str):
        # most strings hold no secret: searching is half the price of substituting
        return pattern.sub(REDACTED, value) if pattern.search(value) else value
    if isinstance(value, dict):
        items = {k: _scrubbed(v, pattern) for k, v in value.items()}
        return items if any(items[k] is not v for k, v in value.items()) else value
    if isinstance(value, list | tuple):
        seq = [_scrubbed(v, pattern) for v in value]
        return seq if any(a is not b for a, b in zip(seq, value, strict=True)) else value
    return value


@dataclass
class StepContext:
    """One attempt of one step: its inputs, its log, and the engine's services."""

    execution: RunExecution
    spec: StepSpec
    step: str
    """The name recorded for this attempt (``fetch[3]`` for a foreach item)."""
    attempt: int
    scope: dict[str, Any]
    """The template context: params, upstream outputs, item, index, run."""
    log: StepLog
    timeout: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    """tokens_in, tokens_out, cost_usd: recorded on the attempt's row."""
    arguments: dict[str, Any] | None = None
    """A python step's arguments, kept so that a failed attempt records what it was given."""
    recorded_inputs: dict[str, Any] | None = None
    """What the step was asked to do (redacted), recorded on the attempt's row."""

    @property
    def run_id(self) -> str:
        return self.execution.run_id

    @property
    def options(self) -> dict[str, Any]:
        return self.spec.options

    @property
    def secrets(self) -> Secrets:
        """The run's secret values: a kind adds those it learns before it records anything."""
        return self.execution.recorder.secrets

    def render(self, value: Any) -> Any:
        """Render an option's templates against this attempt's context."""
        if isinstance(value, str):
            return templates.render(value, self.scope)
        return templates.render_value(value, self.scope)

    def print(self, text: str, stream: str = "stdout") -> None:
        """Write to the step's log (and the live view) from the engine's loop."""
        self.log.write(stream, text)

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """Call a synchronous function on the flow's executor (threads or dask)."""
        return await self.execution.executor.call(fn, kwargs, self)

    async def request_approval(self, message: str, timeout: float | None) -> Any:
        return await self.execution.request_approval(self, message, timeout)

    async def run_child(self, flow: FlowDefinition, params: dict[str, Any]) -> dict[str, Any]:
        return await self.execution.run_child(self, flow.plan(), params)

    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()
