"""Runs as the API shows them: read from the store, whichever process owns them.

A run's JSON is its events folded by the one reader (``RunFold``), with decisions
posted to the store's inbox applied (the first decision wins) and the status the
store's lease rule gives (a live run whose owner is gone is ``interrupted``).
What is committed is what is shown: the store is flushed first, so a run this
process just started or decided is seen as it is.

A run that ended ``succeeded`` or ``cancelled`` never changes again (only failed
and interrupted runs are resumed), so its JSON is kept: reading it again costs
no turn with the store file.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flownb.errors import RunNotFound
from flownb.server.http import ApiError
from flownb.store import lease
from flownb.store.events import RUN_ACTIVE, RUN_ENDED, RunFold, RunStatus, StepFold

if TYPE_CHECKING:
    from flownb.engine.run import Run
    from flownb.store.base import Store

#: a run in one of these never changes again: its JSON may be kept
FINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.CANCELLED})
CACHE_SIZE = 1024
#: how long a read waits for the first record of a run this process started (it is on its way)
START_WAIT = 5.0


class RunReader:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._final: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def detail(self, run_id: str) -> dict[str, Any]:
        """GET /api/runs/{run_id}; ApiError 404 for a run the store does not have."""
        with self._lock:
            kept = self._final.get(run_id)
        if kept is not None:
            return kept
        fold = self.fold(run_id)
        status = self.status(fold)
        out = to_json(fold, status)
        if status in FINAL:
            with self._lock:
                self._final[run_id] = out
                while len(self._final) > CACHE_SIZE:
                    self._final.popitem(last=False)
        return out

    def fold(self, run_id: str) -> RunFold:
        events = self._events(run_id)
        if not events:
            raise ApiError(404, f"no run {run_id!r} in the store; GET /api/runs lists them")
        fold = RunFold.of(events)
        # decisions posted to the inbox and not yet taken up by the run's owner (another process:
        # this one's runs take decisions made here at once, and the inbox's within its poll); only
        # gates count (the inbox also carries commands such as cancel), and only a waiting one
        if not self._mine(run_id) and any(
            g.decision is None and g.requested_at is not None for g in fold.approvals.values()
        ):
            for d in self.store.decisions(run_id):
                if d.step in fold.approvals:
                    fold.decide(d.step, d.decision, d.decided_by, d.comment, d.via, d.ts.timestamp())
        return fold

    def _events(self, run_id: str) -> list[Any]:
        """The run's committed events; for a run this process has just started, once its
        ``run_started`` is recorded (a client that reads right after POST finds it)."""
        from flownb.engine.runtime import find_run

        deadline = time.monotonic() + START_WAIT
        while True:
            self.store.flush()
            events = self.store.run_events(run_id)
            if events:
                return events
            active = find_run(run_id)
            if active is None or active.id != run_id or active.done or time.monotonic() > deadline:
                return events
            time.sleep(0.002)

    def status(self, fold: RunFold) -> RunStatus:
        """The recorded status, or ``interrupted`` when a live run's owner is gone."""
        if fold.status not in RUN_ACTIVE or self._mine(fold.run_id):
            return fold.status  # ended, or owned by this process, alive
        held = self.store.run_owner(fold.run_id)
        if held is None or not lease.owner_alive(held):
            return RunStatus.INTERRUPTED
        return fold.status

    @staticmethod
    def _mine(run_id: str) -> bool:
        """Whether this process runs it now."""
        from flownb.engine.runtime import find_run

        active = find_run(run_id)
        return active is not None and active.id == run_id and not active.done

    def handle(self, run_id: str) -> Run:
        """A handle that controls the run, whichever process owns it (404 when unknown)."""
        import flownb

        try:
            return flownb.attach(run_id, db=self.store)
        except RunNotFound:
            raise ApiError(404, f"no run {run_id!r} in the store; GET /api/runs lists them") from None


def to_json(fold: RunFold, status: RunStatus) -> dict[str, Any]:
    steps = [_step(name, s) for name, s in fold.base_steps().items()]
    approvals = [
        {
            "step": g.step, "message": g.message, "requested_at": _iso(g.requested_at), "decision": g.decision,
            "decided_by": g.decided_by, "comment": g.comment, "via": g.via, "decided_at": _iso(g.decided_at),
            "pending": g.decision is None and g.requested_at is not None and status in RUN_ACTIVE,
        }
        for g in fold.approvals.values()
    ]
    return {
        "run_id": fold.run_id,
        "flow": fold.flow,
        "status": str(status),
        "ended": status in RUN_ENDED,
        "trigger": fold.started.get("trigger"),
        "params": fold.params,
        "started_at": _iso(fold.started_at),
        "ended_at": _iso(fold.ended_at),
        "duration_ms": fold.duration_ms,
        "error": fold.error,
        "host": fold.started.get("host"),
        "pid": fold.started.get("pid"),
        "parent_run_id": fold.parent_run_id,
        "steps": steps,
        "approvals": approvals,
        "pending_approvals": [a["step"] for a in approvals if a["pending"]],
        "last_seq": fold.last_seq,
    }


def _step(name: str, s: StepFold) -> dict[str, Any]:
    finished = s.finished or {}
    return {
        "step": name, "kind": s.kind, "status": str(s.status), "attempts": s.attempts, "level": s.level,
        "started_at": _iso(s.started_at), "duration_ms": s.duration_ms, "error_type": s.error_type,
        "error": s.error, "traceback": s.traceback, "reason": s.reason,
        "stdout": finished.get("stdout"), "stderr": finished.get("stderr"),
        "items": s.items, "items_done": s.items_done if s.items is not None else None,
        "outputs": [
            {"name": o.get("name"), "codec": o.get("codec"), "size_bytes": o.get("size_bytes")}
            for o in s.outputs.values()
        ],
    }  # fmt: skip


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).isoformat() if at is not None else None
