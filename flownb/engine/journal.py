"""What a run records about its steps: one function per record.

The stepper (every step) and the fast path (plain synchronous steps) record
through the same functions here, so a step is recorded the same way whichever
path ran it (a test holds them to it). Payloads are built by the event
vocabulary (store/events.py); nothing here writes SQL or folds events.

Guarantee kept here: an attempt's success is recorded only with its outputs
encoded for the store, so a committed success can always be restored.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flownb.executors.capture import StepLog
from flownb.model.hashing import digest
from flownb.model.spec import StepSpec
from flownb.store import events as ev
from flownb.store.codecs import Encoded, encode

if TYPE_CHECKING:
    from flownb.engine.clock import Clock
    from flownb.engine.context import StepContext
    from flownb.engine.recorder import Recorder
    from flownb.model.flow import Graph

Encodings = list[tuple[str, Encoded]] | Encoded


class Journal:
    """A run's record of its steps: attempts, input and output hashes, and the events that say so."""

    def __init__(
        self, recorder: Recorder, graph: Graph, clock: Clock, params_json: str, *,
        attempts: dict[str, int] | None = None, output_hashes: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.recorder = recorder
        self.graph = graph
        self._time, self._perf = clock.time, clock.perf  # bound once: read on every step's path
        self._params_json = params_json
        #: step (or item) -> its latest attempt number
        self.attempts: dict[str, int] = dict(attempts or {})
        #: step -> the hash of its output, which its dependents' input hashes include
        self.output_hashes: dict[str, str] = dict(output_hashes or {})
        #: input hashes of steps without dependencies, by code hash (they hash no outputs)
        self._root_hashes: dict[str, str] = {}
        self._foreach_t0: dict[str, tuple[float, float]] = {}
        self._notes: dict[str, str] = {}
        #: (step, attempt) -> when it started, for attempts whose end is not recorded yet
        self._open: dict[tuple[str, int], tuple[float, float]] = {}

    # -- numbers -----------------------------------------------------------------------

    def next_attempt(self, step: str) -> int:
        return self.attempts.get(step, 0) + 1

    def input_hash(self, spec: StepSpec) -> str:
        """What the step's inputs were: its code, the params and its dependencies' outputs."""
        if not spec.deps:
            known = self._root_hashes.get(spec.code_hash)
            if known is None:
                known = self._root_hashes[spec.code_hash] = digest(spec.code_hash, self._params_json)
            return known
        upstream = [f"{d}={self.output_hashes.get(d, '')}" for d in sorted(spec.deps)]
        return digest(spec.code_hash, self._params_json, *upstream)

    def encode(self, spec: StepSpec, step: str, value: Any) -> Encodings:
        """A step's output for the store; a cell's named outputs each on its own."""
        if spec.output_names and step == spec.name and isinstance(value, dict):
            return [(n, encode(value[n], step=f"{step}.{n}")) for n in spec.output_names if n in value]
        return encode(value, step=step)

    # -- attempts -------------------------------------------------------------------------

    def started(self, ctx: StepContext, input_hash: str) -> float:
        """Record an attempt's start; returns when it started (seconds since the epoch)."""
        step, attempt, spec = ctx.step, ctx.attempt, ctx.spec
        self.attempts[step] = attempt
        now = self._time()
        self._open[(step, attempt)] = (now, self._perf())
        payload = ev.step_started(attempt=attempt, kind=spec.kind, level=self.graph.levels.get(spec.name),
                                  input_hash=input_hash)  # fmt: skip
        self.recorder.start(step, payload, now)
        return now

    def finished(
        self, ctx: StepContext, started: float, t0: float, status: ev.StepStatus, input_hash: str, *,
        error: BaseException | None = None, encoded: Encodings | None = None, reason: str | None = None,
    ) -> None:  # fmt: skip
        """Record an attempt's end: what it printed and displayed, its error, its outputs."""
        step, spec = ctx.step, ctx.spec
        self._open.pop((step, ctx.attempt), None)
        payload = ev.attempt_finished(
            attempt=ctx.attempt, kind=spec.kind, status=status, level=self.graph.levels.get(spec.name),
            code_hash=spec.code_hash, started_at=started, duration_ms=round((self._perf() - t0) * 1000, 3),
            input_hash=input_hash,
        )  # fmt: skip
        # the optional fields only when there is something to say (this is every step's path)
        log = ctx.log
        if log.written:
            ev.add_fields(payload, stdout=log.text("stdout") or None, stderr=log.text("stderr") or None,
                          displays=log.displays or None)  # fmt: skip
        inputs = ctx.recorded_inputs
        if error is not None:
            if inputs is None and ctx.arguments is not None:
                inputs = snapshot(ctx.arguments)  # what the failed attempt was given, to debug it with
            ev.add_fields(payload, **_error_fields(error))
        if inputs is not None:
            payload["inputs"] = inputs
        if reason:
            payload["reason"] = reason
        if ctx.metrics:
            ev.add_fields(payload, **ctx.metrics)
        # the outputs travel in the step_finished event: one row a step, not two
        if encoded is not None:
            self._outputs(payload, step, encoded, own=step == spec.name, name=spec.name)
        self.recorder.append(ev.Members.STEP_FINISHED, step, payload)  # type: ignore[arg-type]

    def _outputs(self, payload: Any, step: str, encoded: Encodings, *, own: bool, name: str) -> None:
        if isinstance(encoded, list):
            payload["outputs"] = [self.recorder.output(step, n, enc) for n, enc in encoded]
            hashes = [enc.hash for _, enc in encoded]
            payload["output_hash"] = hashes[0] if len(hashes) == 1 else digest(*hashes)
        else:
            payload["outputs"] = [self.recorder.output(step, step, encoded)]
            payload["output_hash"] = encoded.hash
        if own:
            self.output_hashes[name] = payload["output_hash"]

    def retrying(self, step: str, attempt: int, delay: float, exc: BaseException) -> None:
        self.recorder.emit(ev.EventName.STEP_RETRYING, step, **ev.step_retrying(
            attempt=attempt, delay_s=round(delay, 4), error=str(exc),
        ))  # fmt: skip
        self.recorder.commit(urgent=False)

    # -- steps that end without an attempt of their own ---------------------------------------------

    def skipped(self, spec: StepSpec, reason: str) -> None:
        self._ended(spec, ev.StepStatus.SKIPPED, self.next_attempt(spec.name), reason=reason)

    def failed_before_running(self, spec: StepSpec, exc: BaseException) -> None:
        """A step that failed before an attempt began (its condition could not be evaluated)."""
        self._ended(spec, ev.StepStatus.FAILED, self.next_attempt(spec.name), **_error_fields(exc))

    def cached(self, spec: StepSpec, input_hash: str, source_run: str, outputs: list[dict[str, Any]],
               output_hash: str) -> None:  # fmt: skip
        """The step's output was reused from an earlier run with the same inputs and code."""
        self.output_hashes[spec.name] = output_hash
        attempt = self.attempts[spec.name] = self.next_attempt(spec.name)
        self._ended(spec, ev.StepStatus.CACHED, attempt, cached=True, input_hash=input_hash, output_hash=output_hash,
                    reason=f"cached from run {source_run}", duration_ms=0, outputs=outputs)  # fmt: skip

    def fallback_used(self, spec: StepSpec, fallback_step: str, error: BaseException, value: Any) -> None:
        """The step succeeded through its fallback: its output is the fallback's, recorded
        under the step's own name so that resume restores it."""
        encoded = encode(value, step=spec.name)
        self.output_hashes[spec.name] = encoded.hash
        self._ended(
            spec, ev.StepStatus.SUCCEEDED, self.next_attempt(spec.name),
            reason=f"output from fallback {fallback_step!r}", error_type=type(error).__name__, error=str(error),
            output_hash=encoded.hash, outputs=[self.recorder.output(spec.name, spec.name, encoded)],
        )  # fmt: skip

    def _ended(self, spec: StepSpec, status: ev.StepStatus, attempt: int, **fields: Any) -> None:
        level = self.graph.levels.get(spec.name)
        payload = ev.step_finished(attempt=attempt, kind=spec.kind, status=status, level=level,
                                   code_hash=spec.code_hash, **fields)  # fmt: skip
        self.recorder.append(ev.EventName.STEP_FINISHED, spec.name, dict(payload))

    # -- foreach ---------------------------------------------------------------------------------

    def foreach_started(self, spec: StepSpec, count: int) -> None:
        attempt = self.attempts[spec.name] = self.next_attempt(spec.name)
        self._foreach_t0[spec.name] = self._open[(spec.name, attempt)] = (self._time(), self._perf())
        self.recorder.emit(ev.EventName.STEP_STARTED, spec.name, **ev.step_started(
            attempt=attempt, kind=spec.kind, level=self.graph.levels.get(spec.name), items=count,
        ))  # fmt: skip
        self.recorder.commit()

    def foreach_finished(self, ctx: StepContext, value: list[Any], input_hash: str) -> None:
        started, t0 = self._foreach_t0.pop(ctx.spec.name)
        reason = self._notes.pop(ctx.spec.name, None)
        self.finished(ctx, started, t0, ev.StepStatus.SUCCEEDED, input_hash, encoded=encode(value, step=ctx.spec.name),
                      reason=reason)  # fmt: skip

    def foreach_ended(self, spec: StepSpec, input_hash: str, error: BaseException | None) -> None:
        """A foreach step whose items failed beyond its limit (``error``), or that was cancelled."""
        started, t0 = self._foreach_t0.pop(spec.name, (self._time(), self._perf()))
        self._open.pop((spec.name, self.attempts.get(spec.name, 1)), None)
        status = ev.StepStatus.FAILED if error is not None else ev.StepStatus.CANCELLED
        self._ended(spec, status, self.attempts.get(spec.name, 1), started_at=started, input_hash=input_hash,
                    duration_ms=round((self._perf() - t0) * 1000, 3),
                    reason=None if error is not None else "the run was cancelled", **_error_fields(error))  # fmt: skip

    def close_open(self, reason: str) -> None:
        """End every attempt still open when the run ends: no step's record outlives its run."""
        for (step, attempt), (started, t0) in sorted(self._open.items()):
            spec = self.graph.specs.get(step.split("[", 1)[0])
            if spec is None:
                continue
            payload = ev.step_finished(
                attempt=attempt, kind=spec.kind, status=ev.StepStatus.CANCELLED, level=self.graph.levels.get(spec.name),
                code_hash=spec.code_hash, started_at=started, duration_ms=round((self._perf() - t0) * 1000, 3),
                reason=reason,
            )  # fmt: skip
            self.recorder.append(ev.EventName.STEP_FINISHED, step, dict(payload))
        self._open.clear()

    def note(self, step: str, reason: str) -> None:
        """A reason the step's next record gives (a foreach whose failed items were allowed)."""
        self._notes[step] = reason

    def item_done(self) -> None:
        self.recorder.commit(urgent=False)  # each item is checkpointed as it finishes


#: characters of each input's text kept in a failed attempt's snapshot
SNAPSHOT_CHARS = 2_000


def snapshot(arguments: dict[str, Any]) -> dict[str, Any]:
    """A failed attempt's inputs as text, each cut to SNAPSHOT_CHARS (secrets are scrubbed by value
    from everything recorded, this too)."""
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        try:
            text = repr(value)
        except Exception as exc:  # noqa: BLE001  (a broken __repr__ must not hide the step's own error)
            text = f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
        out[name] = text if len(text) <= SNAPSHOT_CHARS else text[:SNAPSHOT_CHARS] + f"... [{len(text)} chars]"
    return out


def _error_fields(error: BaseException | None) -> dict[str, Any]:
    if error is None:
        return {}
    return {"error_type": type(error).__name__, "error": str(error) or type(error).__name__,
            "traceback": format_error(error)}  # fmt: skip


def format_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def new_log(run_id: str, step: str, listeners: list[Callable[[str, str, Any], None]]) -> StepLog:
    """An attempt's log; each listener hears ``(step, stream, text)`` as the step writes."""
    if not listeners:
        return StepLog(run_id=run_id, step=step)
    heard = list(listeners)

    def on_write(stream: str, text: Any) -> None:
        for listener in heard:
            listener(step, stream, text)

    return StepLog(on_write, run_id=run_id, step=step)
