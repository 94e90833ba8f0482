"""Approval gates of one run: requests, decisions from anywhere, and the poller.

A request is committed before the run shows as waiting. Decisions come from
``Run.approve/reject`` (on the engine loop) or from other processes through the
store's inbox, which :meth:`Gates._poll_decisions` reads every few seconds while
a gate waits. The first decision wins.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from flownb.engine.context import StepContext
from flownb.errors import ApprovalRejected, FlownbError, StepTimeout
from flownb.store import events as ev
from flownb.store.base import Decision
from flownb.store.events import RunStatus, StepStatus

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution

APPROVAL_POLL_SECONDS = 2.0
HEARTBEAT_SECONDS = 15.0


class Gates:
    def __init__(self, ex: RunExecution, decided: dict[str, Decision], requested: set[str]) -> None:
        self.ex = ex
        self.decided = decided
        self.requested = requested
        self._waiting: dict[str, asyncio.Future[Decision]] = {}
        self._poller: asyncio.Task[None] | None = None

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()

    async def request(self, ctx: StepContext, message: str, timeout: float | None) -> Decision:
        step = ctx.step
        decision = self.decided.get(step)
        if decision is None:
            if step not in self.requested:
                self.ex.recorder.emit(ev.EventName.APPROVAL_REQUESTED, step, **ev.approval_requested(message=message))
                self.requested.add(step)
            self.ex.recorder.emit(ev.EventName.STEP_WAITING, step, **ev.step_waiting(
                attempt=ctx.attempt, kind="approval", level=self.ex.graph.levels.get(step), message=message,
            ))  # fmt: skip
            self.ex.step_status[step] = StepStatus.WAITING
            future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
            self._waiting[step] = future
            self.ex.set_status(RunStatus.WAITING)
            await asyncio.wrap_future(self.ex.recorder.commit())
            if self._poller is None or self._poller.done():
                self._poller = asyncio.get_running_loop().create_task(self._poll_decisions())
            try:
                decision = await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                raise StepTimeout(
                    f"approval {step!r} of run {self.ex.run_id} got no decision within {timeout:g}s",
                    step=step,
                    run_id=self.ex.run_id,
                ) from None
            finally:
                self._waiting.pop(step, None)
                if not self._waiting and self.ex.status == RunStatus.WAITING:
                    self.ex.set_status(RunStatus.RUNNING)
            self.ex.step_status[step] = StepStatus.RUNNING
        if decision.decision != "approved":
            who = f" by {decision.decided_by}" if decision.decided_by else ""
            why = f": {decision.comment}" if decision.comment else ""
            raise ApprovalRejected(
                f"approval {step!r} of run {self.ex.run_id} was rejected{who}{why}", step=step, run_id=self.ex.run_id
            )
        return decision

    def pending(self) -> list[str]:
        return sorted(self._waiting)

    def decide(self, decision: Decision, *, record: bool = True) -> None:
        """Deliver a decision (on the engine loop). The first decision wins."""
        future = self._waiting.get(decision.step)
        if future is None or future.done():
            raise FlownbError(
                f"step {decision.step!r} of run {self.ex.run_id} is not waiting for approval "
                f"(waiting: {', '.join(self.pending()) or 'none'})"
            )
        self.decided[decision.step] = decision
        if record:
            self.ex.recorder.emit(ev.EventName.APPROVAL_DECIDED, decision.step, **ev.approval_decided(
                decision=decision.decision, decided_by=decision.decided_by, comment=decision.comment, via=decision.via,
            ))  # fmt: skip
            self.ex.recorder.commit()
        future.set_result(decision)

    async def _poll_decisions(self) -> None:
        """Pick up decisions made by other processes (CLI, another notebook)."""
        last_beat = 0.0
        while self._waiting:
            await asyncio.sleep(APPROVAL_POLL_SECONDS)  # real time: a test's manual clock must not spin it
            try:
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    await asyncio.to_thread(self.ex.store.heartbeat, [self.ex.run_id])
                    last_beat = time.monotonic()
                found = await asyncio.to_thread(self.ex.store.decisions, self.ex.run_id)
            except FlownbError:
                continue  # the store is busy with another process; ask again later
            for d in found:
                waiting = self._waiting.get(d.step)
                if waiting is not None and not waiting.done():
                    self.decide(d)
