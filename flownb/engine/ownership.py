"""Who runs a run: a resume claims it, a process that loses it stops, a sub-flow finds its child.

The store keeps the leases (store/lease.py); this module is the engine's side.
Guarantees kept here:

* **A resume claims before it reads.** :func:`claim` takes the run's lease (a new
  epoch) and only then restores the run from its records. From the moment of the
  claim no other process may commit a record of the run, so what it restores is
  final: a step whose success was committed is never executed again, even when
  two processes resume the run at once (exactly one claim succeeds; the other gets
  :class:`~flownb.errors.RunActive`, as does any resume while the owner lives,
  however long its current step takes).
* **A process that loses a run stops it.** When the store finds that another
  process took over a run this one runs (its lease was stale, the owner on another
  host and silent for the lease's lifetime), the run is cancelled here; its late
  records are refused by the store anyway.
* **A sub-flow step resumes its own child run.** A child's run id follows from the
  parent run, the parent step, the child's params and how many children of that
  step succeeded before in this execution (``repeat_until`` runs a new child each
  iteration). So a resumed parent finds the child it started before it was
  interrupted and resumes that child (its committed steps restored, never run
  again), never a new one; a retried step resumes its failed child.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from flownb.engine.resume import Restored, read_run, restore
from flownb.errors import FlownbError
from flownb.store import codecs
from flownb.store.base import Store, open_store

if TYPE_CHECKING:
    from flownb.engine.execution import RunExecution
    from flownb.engine.runtime import Runtime
    from flownb.model.flow import RunPlan
    from flownb.store.lease import Lease

#: stores whose lost leases stop this process's runs (one listener per store)
_WATCHED: weakref.WeakSet[Store] = weakref.WeakSet()
#: parent execution -> parent step -> (how many children of it succeeded before, the latest child)
_CHILDREN: weakref.WeakKeyDictionary[RunExecution, dict[str, tuple[int, RunExecution]]] = weakref.WeakKeyDictionary()


def claim(store: Store, plan: RunPlan, run_id: str) -> Restored:
    """Take the run (``run_id`` or a unique prefix of it) for this process, then restore it.

    Raises :class:`~flownb.errors.RunActive` while another live process owns it. The
    caller has checked that the run is not active in this process.
    """
    full = read_run(store, run_id)[0].run_id  # a prefix resolved; RunNotFound otherwise
    store.claim_run(full)
    try:
        restored = restore(store, plan.graph, full)
        if restored.flow != plan.name:
            raise FlownbError(f"run {full} belongs to flow {restored.flow!r}, not {plan.name!r}")
    except BaseException:
        store.release_run(full)
        raise
    return restored


def watch(rt: Runtime, store: Store) -> None:
    """Stop this process's run of a run another process took over (once per store)."""
    if store in _WATCHED:
        return
    _WATCHED.add(store)

    def lost(run_id: str, taker: Lease | None) -> None:  # on the store's thread
        ex = rt.active.get(run_id)
        if ex is not None:
            rt.loop.call_soon_threadsafe(_stop, ex, taker)

    store.lease_listeners.append(lost)


def _stop(ex: RunExecution, taker: Lease | None) -> None:
    who = f"process {taker.owner.pid} on host {taker.owner.host} (epoch {taker.epoch})" if taker else "another process"
    print(
        f"flownb: run {ex.run_id} was taken over by {who}: this process stops running it "
        "(its lease was not renewed in time); its later records are not written",
        file=sys.stderr,
    )
    ex.cancel()


def child_execution(parent: RunExecution, step: str, plan: RunPlan, params: dict[str, Any]) -> RunExecution:
    """The child run of a sub-flow step: the one it started before (resumed), else a new one."""
    rt = parent.runtime
    used = _CHILDREN.setdefault(parent, {})
    succeeded, previous = used.get(step, (0, None))
    if previous is not None and previous.status == "succeeded":
        succeeded += 1  # a repeat_until iteration: a new child
    run_id = child_run_id(parent.run_id, step, succeeded, params)
    if run_id in rt.active:
        raise FlownbError(f"child run {run_id} of step {step!r} of run {parent.run_id} is still running")
    store = open_store(plan.db)
    watch(rt, store)
    restored = None
    if store.run_owner(run_id) is not None:  # started before, by this parent step: resume it
        restored = claim(store, plan, run_id)
        params = {**restored.params, **params}
    child = rt.create(plan, params, parent=parent, run_id=run_id, restored=restored)
    used[step] = (succeeded, child)
    return child


def child_run_id(parent_run_id: str, step: str, succeeded: int, params: dict[str, Any]) -> str:
    """A child's run id, the same each time the parent step asks for the same child.

    Params no codec can store (volatile) have no stable hash: such a child is new each time.
    """
    encoded = codecs.encode(params, step=step)
    key = uuid.uuid4().hex if encoded.codec == codecs.VOLATILE else encoded.hash
    return hashlib.sha256(f"{parent_run_id}\0{step}\0{succeeded}\0{key}".encode()).hexdigest()[:12]
