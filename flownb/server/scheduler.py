"""The schedule loop: starts each fire time's run once, across restarts and servers.

A thread of its own sleeps until :data:`LEAD` seconds before the next fire time
of any schedule of a served flow (at most :data:`POLL` seconds, to see schedules
added meanwhile by another process), claims what falls due by then, and starts
each claimed fire's run at its time. For each schedule:

* **Due fires** (at most :data:`GRACE` seconds old) each start a run, in order.
* **Missed fires** (older: nothing served them, the server was down or stalled)
  run once: ``catchup="latest"`` starts the latest of them, ``"none"`` skips
  them all. A gap of hours costs two cron look-ups, never one per missed fire.
* **One run per fire.** A fire is claimed in the store before its run starts
  (store/schedules.py: a compare-and-set only one process wins), and the run's
  id is derived from the schedule and the fire time, so that the engine refuses
  a second start of it anyway.
* **A claim whose run never started** (the claimer stopped or died between the
  claim and the fire) is taken over, once, by one server, after :data:`RECOVER_AFTER`
  seconds: the fire still starts its run, late.

Errors (a store turn that timed out, a flow that no longer validates) are
logged to the ``flownb`` logger and tried again at the next wake-up; the loop
never dies of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flownb.errors import FlownbError
from flownb.server.http import ApiError
from flownb.store import schedules

if TYPE_CHECKING:
    from flownb.engine.run import Run
    from flownb.server.flows import ServedFlows
    from flownb.store.schedules import Schedule

log = logging.getLogger("flownb")

#: a fire this many seconds old that no server started was missed (see the module docstring)
GRACE = 5.0
#: the longest sleep: how soon a schedule another process added is seen
POLL = 1.0
#: a claim older than this whose run is not in the store: its claimer died before starting it
RECOVER_AFTER = 10.0
#: fires are claimed this many seconds ahead, so that at the fire only the run's start is left
LEAD = 0.3


@dataclass(frozen=True, slots=True)
class Fired:
    """A run this loop started: for tests and benchmarks (the delay from fire to start)."""

    schedule: str
    fire: datetime
    run_id: str
    started: float
    """When ``flow.run`` returned (seconds since the epoch)."""
    missed: bool


class Scheduler:
    def __init__(
        self, flows: ServedFlows, *, clock: Callable[[], float] = time.time, grace: float = GRACE,
        poll: float = POLL, lead: float = LEAD,
    ) -> None:  # fmt: skip
        self.flows = flows
        self.store = flows.store
        self.clock = clock
        self.grace = grace
        self.poll = poll
        self.lead = lead
        self.me = f"{os.getpid()}@{socket.gethostname()}"
        self.fired: list[Fired] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: run ids of claims seen started (no need to look for them again)
        self._seen: set[str] = set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="flownb-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look at the schedules now (one was just added in this process)."""
        self._wake.set()

    def _loop(self) -> None:
        self._warm()
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # logged; the loop goes on
                log.exception("flownb serve: the schedule loop failed; trying again in %.0f s", self.poll)
                wait = self.poll
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def _warm(self) -> None:
        """What a first run would otherwise pay at its fire: the engine's thread, the flows'
        validated graphs, the schedules table."""
        from flownb.engine.runtime import runtime

        runtime()
        for name in self.flows.names:
            with contextlib.suppress(FlownbError):  # said when a run of it starts
                self.flows.get(name).flow.plan()
        try:
            schedules.all_schedules(self.store)
        except FlownbError as exc:
            log.warning("flownb serve: cannot read the schedules yet: %s", exc)

    def tick(self) -> float:
        """Claim the fires due by now and in the next :data:`LEAD` seconds, start each at its
        time; the seconds until the next look (at most ``poll``).

        Claiming ahead keeps the store's work (reading the schedules, the claim) out of the
        time between a fire and its run's start. A claim whose run this loop never starts
        (it stopped, or its process died, before the fire) is recovered by whichever server
        looks after :data:`RECOVER_AFTER` seconds.
        """
        now = self._now()
        horizon = now + timedelta(seconds=self.lead)
        claimed: list[tuple[datetime, Schedule, str, bool]] = []
        upcoming: list[datetime] = []
        for schedule in schedules.all_schedules(self.store):
            if self._stop.is_set():
                break
            if schedule.flow not in self.flows:
                continue  # another server serves it
            try:
                self._recover(schedule, now)
                claimed += self._claim_due(schedule, now, horizon)
            except FlownbError as exc:
                log.warning("flownb serve: schedule %r: %s", schedule.name, exc)
            upcoming.append(schedule.next_fire(max(horizon, schedule.last_fire or horizon)))
        for fire, schedule, run_id, missed in sorted(claimed, key=lambda c: c[0]):
            early = (fire - self._now()).total_seconds()
            if early > 0 and self._stop.wait(early):
                break  # stopping: the claims left are recovered by whoever serves next
            self._start(schedule, fire, run_id, missed=missed)
        if not upcoming:
            return self.poll
        return min(self.poll, (min(upcoming) - self._now()).total_seconds() - self.lead)

    def _claim_due(
        self, s: Schedule, now: datetime, horizon: datetime
    ) -> list[tuple[datetime, Schedule, str, bool]]:
        """Claim the schedule's fires up to ``horizon``: missed ones as its catch-up says, then each
        due one; the claims this process won that start a run, as (fire, schedule, run id, missed)."""
        last = s.last_fire or s.created_at
        if s.next_fire(last) > horizon:
            return []
        won: list[tuple[datetime, Schedule, str, bool]] = []
        edge = now - timedelta(seconds=self.grace)
        missed = s.latest_fire(edge)
        if missed > last:
            run_id = s.run_id(missed) if s.catchup == "latest" else None
            if schedules.claim(self.store, s.name, missed, run_id, by=self.me, at=now) and run_id is not None:
                won.append((missed, s, run_id, True))
            last = missed
        fire = s.next_fire(max(last, edge))
        while fire <= horizon and not self._stop.is_set():
            run_id = s.run_id(fire)
            if schedules.claim(self.store, s.name, fire, run_id, by=self.me, at=now):
                won.append((fire, s, run_id, False))
            fire = s.next_fire(fire)
        return won

    def _recover(self, s: Schedule, now: datetime) -> None:
        """Start the run of the schedule's last claim if its claimer died before it did."""
        run_id, claimed_at, fire = s.last_run_id, s.claimed_at, s.last_fire
        if run_id is None or claimed_at is None or fire is None or run_id in self._seen:
            return
        if (now - claimed_at).total_seconds() < RECOVER_AFTER:
            return
        if self.store.run_ids_like(run_id):
            self._seen.add(run_id)
            return
        if schedules.reclaim(self.store, s.name, fire, claimed_at, by=self.me, at=now):
            log.warning("flownb serve: schedule %r: fire %s was claimed but never started; starting it", s.name, fire)
            self._start(s, fire, run_id, missed=True)
        self._seen.add(run_id)

    def _start(self, s: Schedule, fire: datetime, run_id: str, *, missed: bool) -> Run | None:
        try:
            run = self.flows.start(s.flow, s.params, trigger="schedule", run_id=run_id)
        except ApiError as exc:
            if exc.status == 409:  # started already (by another server): the fire ran once
                return None
            log.warning("flownb serve: schedule %r could not start its run %s: %s", s.name, run_id, exc.message)
            return None
        self._seen.add(run_id)
        self.fired.append(Fired(s.name, fire, run_id, self.clock(), missed))
        return run

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)
