"""The one vocabulary of the ``events`` table: names, statuses, payloads, and the fold.

Everything flownb records about a run is an event appended to one table. This
module is the only place that says what the events are:

* :class:`RunStatus` and :class:`StepStatus`, the statuses of the contract;
* :class:`EventName`, and one builder per event that makes its payload (the
  engine records nothing it did not build here);
* :class:`RunFold`, the one reader: it folds a run's events, in ``seq`` order,
  into what the run looks like. Resume, the live view, pictures and the CLI
  read runs through it; the store's SQL views (schema.py) compute the same
  columns, and a test holds the two to each other.

Payloads are plain dicts (they are written as JSON); the ``TypedDict`` classes
document them and let mypy check the builders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

from flownb.store.base import Event


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    CACHED = "cached"


#: a run in one of these may still change (an owner may be working on it)
RUN_ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED})
#: a run the engine ended (``interrupted`` is decided by whoever reads a dead owner's run)
RUN_ENDED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
RUN_FINISHED = RUN_ENDED | {RunStatus.INTERRUPTED}
#: a step with a usable output: never run again for its run
STEP_SUCCESS = frozenset({StepStatus.SUCCEEDED, StepStatus.CACHED})
#: a step its dependents no longer wait for
STEP_DONE = STEP_SUCCESS | {StepStatus.SKIPPED}
#: a step that will not change any more in this attempt of the run
STEP_ENDED = STEP_DONE | {StepStatus.FAILED, StepStatus.CANCELLED}
#: a step still in the middle of something
STEP_ACTIVE = frozenset({StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRYING, StepStatus.WAITING})


class EventName(StrEnum):
    RUN_STARTED = "run_started"
    RUN_STATUS = "run_status"
    RUN_ENDED = "run_ended"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    STEP_RETRYING = "step_retrying"
    STEP_WAITING = "step_waiting"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"


class Members:
    """The vocabulary as the per-event paths read it (the builders and the fold here, the
    engine's step path, the live view): event names as the plain str they are stored as,
    statuses as members, all bound as plain class attributes.

    On Python 3.11 a member looked up through its enum class costs four times a plain
    attribute (EnumType's ``__getattr__`` takes the class off the type's fast path), and
    Arrow converts a StrEnum thirty times slower than a str. Converting a value by calling
    the enum costs more still: ``_step_status`` and ``_run_status`` use dicts.
    """

    RUN_STARTED = str(EventName.RUN_STARTED)
    RUN_STATUS = str(EventName.RUN_STATUS)
    RUN_ENDED = str(EventName.RUN_ENDED)
    STEP_STARTED = str(EventName.STEP_STARTED)
    STEP_FINISHED = str(EventName.STEP_FINISHED)
    STEP_RETRYING = str(EventName.STEP_RETRYING)
    STEP_WAITING = str(EventName.STEP_WAITING)
    APPROVAL_REQUESTED = str(EventName.APPROVAL_REQUESTED)
    APPROVAL_DECIDED = str(EventName.APPROVAL_DECIDED)
    RUNNING = StepStatus.RUNNING
    RETRYING = StepStatus.RETRYING
    WAITING = StepStatus.WAITING
    SUCCEEDED = StepStatus.SUCCEEDED
    FAILED = StepStatus.FAILED
    RUN_PENDING = RunStatus.PENDING


_STEP_STATUSES: dict[str, StepStatus] = {m.value: m for m in StepStatus}
_RUN_STATUSES: dict[str, RunStatus] = {m.value: m for m in RunStatus}


def _step_status(value: Any) -> StepStatus:
    return _STEP_STATUSES.get(value) or StepStatus(value)  # an unknown value raises, as before


def _run_status(value: Any) -> RunStatus:
    return _RUN_STATUSES.get(value) or RunStatus(value)


# -- payloads ---------------------------------------------------------------------------------


class RunStartedPayload(TypedDict, total=False):
    flow: str
    status: str
    params: Any
    """The params as shown (secret-looking ones redacted; see engine/params.py)."""
    stored_params: list[dict[str, Any]]
    host: str
    pid: int
    notebook: str | None
    flow_hash: str
    parent_run_id: str | None
    trigger: str
    """What started it: manual, cli, api, schedule or webhook."""
    steps: dict[str, dict[str, Any]]
    """Each step's kind and dependencies: pictures of runs whose flow is not defined here."""


class StepFinishedPayload(TypedDict, total=False):
    attempt: int
    kind: str
    status: str
    level: int | None
    started_at: float
    duration_ms: float
    input_hash: str
    code_hash: str
    output_hash: str
    outputs: list[dict[str, Any]]
    stdout: str
    stderr: str
    displays: list[dict[str, Any]]
    error_type: str
    error: str
    traceback: str
    reason: str
    cached: bool
    inputs: dict[str, Any]


def run_started(
    *, flow: str, params: Any, host: str, pid: int, notebook: str | None, flow_hash: str,
    parent_run_id: str | None, steps: dict[str, dict[str, Any]], trigger: str = "manual",
) -> RunStartedPayload:  # fmt: skip
    return {
        "flow": flow, "status": RunStatus.PENDING, "params": params, "host": host, "pid": pid, "notebook": notebook,
        "flow_hash": flow_hash, "parent_run_id": parent_run_id, "steps": steps, "trigger": trigger,
    }  # fmt: skip


def run_status(status: RunStatus, **extra: Any) -> dict[str, Any]:
    """The run's status changed (``resumed=True, pid, host`` when a process resumes it)."""
    return {"status": status, **extra}


def run_ended(status: RunStatus, *, error: str | None, duration_ms: float) -> dict[str, Any]:
    return {"status": status, "error": error, "duration_ms": duration_ms}


def step_started(
    *, attempt: int, kind: str, level: int | None, input_hash: str | None = None, items: int | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"attempt": attempt, "kind": kind, "status": Members.RUNNING, "level": level}
    if input_hash is not None:
        payload["input_hash"] = input_hash
    if items is not None:
        payload["items"] = items
    return payload


def step_finished(
    *, attempt: int, kind: str, status: StepStatus, level: int | None, code_hash: str, **fields: Any
) -> StepFinishedPayload:
    """An attempt's end (or a step that ends without running: skipped, cached, failed before it ran).

    ``fields`` are the optional keys of :class:`StepFinishedPayload` and a kind's
    metrics (tokens_in, tokens_out, cost_usd, child_run_id); None values are left out.
    """
    payload: dict[str, Any] = {"attempt": attempt, "kind": kind, "status": status, "level": level,
                               "code_hash": code_hash}  # fmt: skip
    return add_fields(payload, **fields) if fields else payload  # type: ignore[arg-type,return-value]


def attempt_finished(
    *, attempt: int, kind: str, status: StepStatus, level: int | None, code_hash: str, started_at: float,
    duration_ms: float, input_hash: str,
) -> StepFinishedPayload:
    """An attempt's end, as every attempt records it (its optional fields: :func:`add_fields`)."""
    return {"attempt": attempt, "kind": kind, "status": status, "level": level, "code_hash": code_hash,
            "started_at": started_at, "duration_ms": duration_ms, "input_hash": input_hash}  # fmt: skip


def add_fields(payload: StepFinishedPayload, **fields: Any) -> StepFinishedPayload:
    """``fields`` added to a ``step_finished`` payload, leaving out the None ones."""
    for key, value in fields.items():
        if value is not None:
            payload[key] = value  # type: ignore[literal-required]
    return payload


def step_retrying(*, attempt: int, delay_s: float, error: str) -> dict[str, Any]:
    return {"attempt": attempt, "delay_s": delay_s, "error": error}


def step_waiting(*, attempt: int, kind: str, level: int | None, message: str) -> dict[str, Any]:
    return {"attempt": attempt, "kind": kind, "status": StepStatus.WAITING, "level": level, "message": message}


def approval_requested(*, message: str) -> dict[str, Any]:
    return {"message": message}


def approval_decided(*, decision: str, decided_by: str | None, comment: str | None, via: str) -> dict[str, Any]:
    return {"decision": decision, "decided_by": decided_by, "comment": comment, "via": via}


# -- the fold -----------------------------------------------------------------------------------


@dataclass
class StepFold:
    """One step (or foreach item ``x[3]``) as its events say it is."""

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    kind: str | None = None
    level: int | None = None
    started_at: float | None = None
    """When its latest attempt started (seconds since the epoch)."""
    duration_ms: float | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    reason: str | None = None
    items: int | None = None
    items_done: int = 0
    finished: dict[str, Any] | None = None
    """The payload of its latest ``step_finished`` (unless the fold keeps no payloads)."""
    finished_attempt: int = 0
    """The attempt of its latest ``step_finished`` (0: none yet)."""
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Output name -> its record in the latest ``step_finished`` that had outputs."""


@dataclass
class ApprovalFold:
    step: str
    message: str = ""
    requested_at: float | None = None
    decision: str | None = None
    decided_by: str | None = None
    comment: str | None = None
    via: str | None = None
    decided_at: float | None = None


@dataclass
class RunFold:
    """A run as its events say it is: the one reader of the ``events`` table.

    ``apply`` takes events in ``seq`` order; an event seen twice (a replay that
    overlaps a live subscription) is ignored. ``status`` is the recorded one:
    whether an active run's owner still lives is the store's to say.
    """

    run_id: str = ""
    flow: str = ""
    status: RunStatus = RunStatus.PENDING
    params: Any = None
    started: dict[str, Any] = field(default_factory=dict)
    """The ``run_started`` payload."""
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    duration_ms: float | None = None
    parent_run_id: str | None = None
    steps: dict[str, StepFold] = field(default_factory=dict)
    """Steps by name; foreach items (``x[3]``) have their own entries."""
    approvals: dict[str, ApprovalFold] = field(default_factory=dict)
    last_seq: int = 0
    resumed: int = 0
    seen: set[int] = field(default_factory=set, repr=False)
    """The seqs folded already."""
    payloads: bool = field(default=True, repr=False)
    """False: a step's ``finished`` payload and ``outputs`` are not kept. A live view reads
    neither, and a thousand of them kept for as long as a finished view is shown made every
    full collection of the garbage collector walk them."""

    @classmethod
    def of(cls, events: Iterable[Event], steps: Iterable[str] = (), *, payloads: bool = True) -> RunFold:
        fold = cls(payloads=payloads)
        for name in steps:
            fold.steps[name] = StepFold()
        for e in events:
            fold.apply(e)
        return fold

    @property
    def next_seq(self) -> int:
        return self.last_seq + 1

    def step(self, name: str) -> StepFold:
        found = self.steps.get(name)
        if found is None:
            found = self.steps[name] = StepFold()
        return found

    def base_steps(self) -> dict[str, StepFold]:
        """The steps without their foreach items."""
        return {n: s for n, s in self.steps.items() if "[" not in n}

    def apply(self, e: Event) -> bool:
        """Fold one event; False when it was seen already.

        Events usually come in ``seq`` order, but an attempt's start may be committed
        after its end (the recorder holds starts back briefly): a start that arrives
        after its attempt's end changes nothing it says."""
        if e.seq in self.seen:
            return False
        self.seen.add(e.seq)
        self.last_seq = max(self.last_seq, e.seq)
        if not self.run_id:
            self.run_id = e.run_id
        p = e.payload
        name = e.event
        if e.step and name in _STEP_EVENTS:  # most events: looked at first
            self._step_event(e)
        elif name == Members.RUN_STARTED:
            self.started = dict(p)
            self.flow = p.get("flow", self.flow)
            self.params = p.get("params")
            self.parent_run_id = p.get("parent_run_id")
            self.started_at = e.at
            self.status = _run_status(p.get("status", Members.RUN_PENDING))
            for step, shape in (p.get("steps") or {}).items():
                self.step(step).kind = shape.get("kind") if isinstance(shape, Mapping) else None
        elif name in (Members.RUN_STATUS, Members.RUN_ENDED):
            self.status = _run_status(p.get("status", self.status))
            self.resumed += bool(p.get("resumed"))
            if name == Members.RUN_ENDED:
                self.error = p.get("error")
                self.duration_ms = p.get("duration_ms")
                self.ended_at = e.at
            elif self.status in RUN_ACTIVE:
                self.ended_at = None
        elif name == Members.APPROVAL_REQUESTED and e.step:
            gate = self._gate(e.step)
            gate.message = p.get("message") or gate.message
            gate.requested_at = gate.requested_at or e.at
        elif name == Members.APPROVAL_DECIDED and e.step:
            self.decide(e.step, p.get("decision"), p.get("decided_by"), p.get("comment"), p.get("via"), e.at)
        return True

    def decide(
        self, step: str, decision: str | None, decided_by: str | None, comment: str | None, via: str | None,
        at: float | None,
    ) -> None:  # fmt: skip
        """A decision (an event, or a posted one from the store's inbox): the first one wins."""
        gate = self._gate(step)
        if gate.decision is None and decision is not None:
            gate.decision, gate.decided_by, gate.comment, gate.via, gate.decided_at = (
                decision, decided_by, comment, via, at,
            )  # fmt: skip

    def _gate(self, step: str) -> ApprovalFold:
        gate = self.approvals.get(step)
        if gate is None:
            gate = self.approvals[step] = ApprovalFold(step)
        return gate

    def _step_event(self, e: Event) -> None:
        assert e.step is not None
        s = self.step(e.step)
        p = e.payload
        attempt = int(p.get("attempt") or 0)
        s.attempts = max(s.attempts, attempt)
        s.kind = p.get("kind", s.kind)
        if "level" in p:
            s.level = p["level"]
        if e.event == Members.STEP_STARTED:
            s.items = p.get("items", s.items)
            if s.finished_attempt and s.finished_attempt >= attempt:
                return  # a late start of an attempt whose end is folded already
            s.status = Members.RUNNING
            s.started_at = e.at
        elif e.event == Members.STEP_RETRYING:
            s.status = Members.RETRYING
            s.error = p.get("error")
        elif e.event == Members.STEP_WAITING:
            s.status = Members.WAITING
            gate = self._gate(e.step)
            gate.message = p.get("message") or gate.message
            gate.requested_at = gate.requested_at or e.at
        elif e.event == Members.STEP_FINISHED:
            s.status = _step_status(p.get("status", s.status))
            s.started_at = p.get("started_at", s.started_at)
            s.duration_ms = p.get("duration_ms", s.duration_ms)
            s.reason = p.get("reason")
            s.finished_attempt = attempt
            if s.status == Members.FAILED:
                s.error, s.error_type, s.traceback = p.get("error"), p.get("error_type"), p.get("traceback")
            if self.payloads:
                s.finished = p
                for output in p.get("outputs") or ():
                    s.outputs[output["name"]] = output
            if "[" in e.step:
                self.step(e.step.split("[", 1)[0]).items_done += 1


_STEP_EVENTS = frozenset(
    {EventName.STEP_STARTED, EventName.STEP_FINISHED, EventName.STEP_RETRYING, EventName.STEP_WAITING}
)
