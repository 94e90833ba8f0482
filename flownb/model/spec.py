"""What a step is: its kind, its dependencies and its policies."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

Backoff = Literal["constant", "linear", "exponential"]
OnFailure = Literal["stop", "continue"]
BACKOFFS: tuple[str, ...] = ("constant", "linear", "exponential")
#: when a step runs, given how its upstream steps ended (DESIGN §2)
TRIGGER_RULES: tuple[str, ...] = ("all_succeeded", "none_failed", "all_done", "one_succeeded")
ON_FAILURE: tuple[str, ...] = ("stop", "continue")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing step is tried again."""

    retries: int = 0
    backoff: Backoff = "exponential"
    retry_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if self.backoff == "constant":
            base = self.retry_delay
        elif self.backoff == "linear":
            base = self.retry_delay * attempt
        else:
            base = self.retry_delay * 2 ** (attempt - 1)
        base = min(base, self.max_delay)
        if self.jitter:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, min(base, self.max_delay))


@dataclass
class StepSpec:
    """One step of a flow, as registered; immutable once a run has started."""

    name: str
    kind: str
    fn: Callable[..., Any] | None
    inputs: tuple[str, ...]
    """Parameter names of ``fn`` in order (step names, ``params``, ``item``...)."""
    deps: frozenset[str]
    """Steps this one waits for: parameter names, template references, ``after``."""
    options: dict[str, Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    when: str | None = None
    foreach: str | None = None
    concurrency: int | None = None
    repeat_until: str | None = None
    max_iterations: int = 100
    on_failure: OnFailure = "stop"
    fallback: str | Callable[..., Any] | None = None
    cache: bool = False
    code_hash: str = ""
    origin: tuple[str, ...] = ()
    """Where the step was defined; the same origin may redefine it."""
    output_names: tuple[str, ...] | None = None
    """For steps that produce several named values (notebook cells)."""
    trigger_rule: str = "all_succeeded"
    """all_succeeded: every upstream step succeeded; none_failed: none failed and one succeeded
    (the join after ``when`` branches); all_done: every upstream ended, however (cleanup);
    one_succeeded: every upstream ended and one succeeded."""
    max_failures: int | float = 0
    """For foreach: how many items may fail (a count, or a fraction of the items below 1)."""
    required: frozenset[str] = frozenset()
    """Parameters without a default: an upstream step that did not succeed gives them None."""
    handler: Any = field(default=None, compare=False, repr=False)
    """The step kind that runs it (a ``flownb.model.kinds.StepKind``), set when the step is defined."""

    @cached_property
    def plain(self) -> bool:
        """A synchronous Python function with no condition, loop, cache, timeout,
        retries or fallback: the engine runs it the short way (engine/fastpath.py)."""
        return (
            self.kind == "python"
            and self.fn is not None
            and not inspect.iscoroutinefunction(self.fn)
            and self.when is None
            and self.foreach is None
            and self.repeat_until is None
            and self.timeout is None
            and self.fallback is None
            and not self.cache
            and self.retry.retries == 0
        )
