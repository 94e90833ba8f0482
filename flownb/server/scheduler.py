"""The schedule loop: starts each fire time's run once, across restarts and servers.

A thread of its own sleeps until the next fire time of any schedule of a served
flow (at most :data:`POLL` seconds, to see schedules added meanwhile by another
process), then, for each schedule:

* **Due fires** (at most :data:`GRACE` seconds old) each start a run, in order.
* **Missed fires** (older: nothing served them, the server was down or stalled)
  run once: ``catchup="latest"`` starts the latest of them, ``"none"`` skips
  them all. A gap of hours costs two cron look-ups, never one per missed fire.
* **One run per fire.** A fire is claimed in the store before its run starts
  (store/schedules.py: a compare-and-set only one process wins), and the run's
  id is derived from the schedule and the fire time, so that the engine refuses
  a second start of it anyway.
* **A claim whose run never started** (the claimer died in the milliseconds
  between the two) is taken over, once, by one server, after :data:`RECOVER_AFTER`
  seconds: the fire still starts its run.

Errors (a store turn that timed out, a flow that no longer validates) are
logged to the ``flownb`` logger and tried again at the next wake-up; the loop
never dies of them.
"""

from __future__ import annotations

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
        poll: float = POLL,
    ) -> None:  # fmt: skip
        self.flows = flows
        self.store = flows.store
        self.clock = clock
        self.grace = grace
        self.poll = poll
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
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # logged; the loop goes on
                log.exception("flownb serve: the schedule loop failed; trying again in %.0f s", self.poll)
                wait = self.poll
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def tick(self) -> float:
        """Start what is due now; the seconds until the next fire (at most ``poll``)."""
        now = self._now()
        wait = self.poll
        for schedule in schedules.all_schedules(self.store):
            if self._stop.is_set():
                break
            if schedule.flow not in self.flows:
                continue  # another server serves it
            try:
                self._recover(schedule, now)
                self._fire_due(schedule, now)
            except FlownbError as exc:
                log.warning("flownb serve: schedule %r: %s", schedule.name, exc)
            after = max(now, schedule.last_fire or now)
            nxt = schedule.next_fire(after)
            wait = min(wait, (nxt - self._now()).total_seconds())
        return wait

    def _fire_due(self, s: Schedule, now: datetime) -> None:
        last = s.last_fire or s.created_at
        if s.next_fire(last) > now:
            return
        edge = now - timedelta(seconds=self.grace)
        missed = s.latest_fire(edge)
        if missed > last:
            run_id = s.run_id(missed) if s.catchup == "latest" else None
            if schedules.claim(self.store, s.name, missed, run_id, by=self.me, at=now) and run_id is not None:
                self._start(s, missed, run_id, missed=True)
            last = missed
        fire = s.next_fire(max(last, edge))
        while fire <= now and not self._stop.is_set():
            run_id = s.run_id(fire)
            if schedules.claim(self.store, s.name, fire, run_id, by=self.me, at=now):
                self._start(s, fire, run_id, missed=False)
            fire = s.next_fire(fire)

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
