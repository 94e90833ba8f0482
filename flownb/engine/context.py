"""What a step kind sees while it runs one attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flownb.engine.capture import StepLog
from flownb.model import templates
from flownb.model.spec import StepSpec

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution
    from flownb.model.flow import Flow

REDACTED = "[redacted]"
_SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie")


def is_secret_name(name: str) -> bool:
    """A header, parameter or option name that suggests a credential."""
    low = name.lower()
    return low in _SECRET_HEADERS or any(w in low for w in ("token", "secret", "key", "auth", "password", "passwd"))


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
    recorded_inputs: dict[str, Any] | None = None
    """What the step was asked to do (redacted), recorded on the attempt's row."""

    @property
    def run_id(self) -> str:
        return self.execution.run_id

    @property
    def options(self) -> dict[str, Any]:
        return self.spec.options

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

    async def run_child(self, flow: Flow, params: dict[str, Any]) -> dict[str, Any]:
        return await self.execution.run_child(self, flow, params)

    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()
