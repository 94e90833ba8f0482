"""Rebuilding a run from its events: what resume restores and what it re-runs.

A step whose success was committed is restored (its outputs loaded from the
store), never executed again, unless its code changed since: then it runs
again, with everything downstream of it. A step that was running when the
process died has no committed success and runs again (at least once). The
run's params come back exactly as they were recorded (see params.py).

Volatile outputs (``outputs.codec = 'volatile'``: a generator, a lock, a live
connection, kept in memory only) are the one exception to "never executed
again": a succeeded step with a volatile output runs again when a step that
will run on this resume reads it (a notebook cell names the outputs it reads
of each producer; any other step reads its producers' whole values), since
nothing else can give that step its input; and so on upstream, for the
volatile inputs of that step in turn.
A volatile output nobody still needs is not restored: the step counts as
done, and its value is missing (``None`` for a step's single output; the name
is left out of a notebook cell's several outputs). Steps downstream of a step
that runs again are restored as they were, not run again. Cached hits and
``foreach`` items with volatile outputs are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flownb.engine.params import restore_params
from flownb.errors import FlownbError, RunNotFound
from flownb.model.dag import downstream
from flownb.model.flow import Graph
from flownb.model.spec import StepSpec
from flownb.store.base import Decision, Event, Store
from flownb.store.codecs import VOLATILE

SUCCESS = ("succeeded", "cached")


@dataclass
class Restored:
    run_id: str
    flow: str
    params: dict[str, Any]
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    output_hashes: dict[str, str] = field(default_factory=dict)
    items: dict[str, Any] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    requested: set[str] = field(default_factory=set)
    next_seq: int = 1
    parent_run_id: str | None = None
    started_at: float | None = None
    trigger: str | None = None


def read_run(store: Store, run_id: str) -> list[Event]:
    events = store.run_events(run_id)
    if not events:
        known = store.run_ids_like(run_id) if len(run_id) < 32 else []
        if len(known) == 1:
            return store.run_events(known[0])
        hint = f"; runs starting with {run_id!r}: {', '.join(known[:5])}" if known else ""
        raise RunNotFound(f"no run {run_id!r} in the store {store.path}{hint}; see flownb.history()")
    return events


def restore(store: Store, graph: Graph, run_id: str) -> Restored:
    events = read_run(store, run_id)
    run_id = events[0].run_id
    started = next((e for e in events if e.event == "run_started"), None)
    if started is None:
        raise FlownbError(
            f"run {run_id} in the store {store.path} has no record of its start (its params could not be "
            "recorded, or the file lost it), so it cannot be resumed; start a new run"
        )
    status = started.payload.get("status", "pending")
    finished: dict[str, dict[str, Any]] = {}
    outputs: dict[tuple[str, str], dict[str, Any]] = {}
    params = restore_params(store, run_id, started.payload)
    out = Restored(run_id, started.payload.get("flow", graph.flow), params, status)
    out.started_at, out.trigger = started.at, started.payload.get("trigger")
    out.parent_run_id = started.payload.get("parent_run_id")
    for e in events:
        p = e.payload
        if e.event in ("run_status", "run_ended"):
            out.status = p.get("status", out.status)
        elif e.event == "step_finished" and e.step:
            finished[e.step] = p
            for output in p.get("outputs") or ():
                outputs[(e.step, output["name"])] = output
        elif e.event == "approval_requested" and e.step:
            out.requested.add(e.step)
        elif e.event == "approval_decided" and e.step and e.step not in out.decisions:
            out.decisions[e.step] = Decision(
                run_id, e.step, p["decision"], p.get("decided_by"), p.get("comment"), p.get("via", "?"), e.ts
            )
        if e.step and "attempt" in p and e.event.startswith("step_"):
            out.attempts[e.step] = max(out.attempts.get(e.step, 0), int(p["attempt"]))
    for d in store.decisions(run_id):
        out.decisions.setdefault(d.step, d)
    out.next_seq = max(e.seq for e in events) + 1

    succeeded = {s for s, p in finished.items() if p.get("status") in SUCCESS and s in graph.deps}
    changed = {s for s in succeeded if finished[s].get("code_hash") != graph.specs[s].code_hash}
    stale = changed | downstream(graph.deps, changed)
    kept = _without_needed_volatiles(graph, succeeded - stale, finished)
    for step in sorted(kept):
        out.outputs[step] = _value(store, run_id, graph.specs[step], step, outputs)
        out.output_hashes[step] = finished[step].get("output_hash") or ""
        out.statuses[step] = finished[step]["status"]
    for item, p in finished.items():
        base = item.split("[", 1)[0]
        restorable = "[" in item and p.get("status") in SUCCESS and base in graph.specs and base not in stale
        restorable = restorable and p.get("code_hash") == graph.specs[base].code_hash and (item, item) in outputs
        # an item whose output is volatile runs again
        if restorable and outputs[(item, item)].get("codec") != VOLATILE:
            out.items[item] = store.load_value(run_id, item, item, outputs[(item, item)])
    return out


def _without_needed_volatiles(graph: Graph, restorable: set[str], finished: dict[str, dict[str, Any]]) -> set[str]:
    """``restorable`` less the steps whose volatile output a step that runs needs (see above)."""
    names = {
        s: {o.get("name") for o in finished[s].get("outputs") or () if o.get("codec") == VOLATILE} for s in restorable
    }  # fmt: skip
    volatile = {s for s, lost in names.items() if lost}
    kept = set(restorable)
    while volatile:
        runs = set(graph.deps) - kept
        needed = {s for s in volatile if any(s in graph.deps[r] and _reads_any(graph, r, s, names[s]) for r in runs)}
        if not needed:
            break
        kept -= needed
        volatile -= needed
    return kept


def _reads_any(graph: Graph, step: str, producer: str, lost: set[Any]) -> bool:
    """Whether ``step`` reads one of ``producer``'s lost outputs. A notebook cell says which
    names it reads of each producer (``__flownb_reads__``); any other step reads its whole value."""
    reads = getattr(graph.specs[step].fn, "__flownb_reads__", None)
    if not isinstance(reads, dict):
        return True
    return bool(lost & set(reads.get(producer, ())))


def _value(
    store: Store, run_id: str, spec: StepSpec, step: str, outputs: dict[tuple[str, str], dict[str, Any]]
) -> Any:
    if spec.output_names:
        return {
            name: store.load_value(run_id, step, name, outputs[(step, name)])
            for name in spec.output_names
            if (step, name) in outputs and outputs[(step, name)].get("codec") != VOLATILE
        }
    payload = outputs.get((step, step))
    if payload is None or payload.get("codec") == VOLATILE:
        return None
    return store.load_value(run_id, step, step, payload)


def find_cached(
    store: Store, flow: str, spec: StepSpec, input_hash: str, current_run: str
) -> tuple[str, tuple[Any, list[dict[str, Any]]], str] | None:
    """An earlier success of the same step with the same inputs and code."""
    hit = store.cached_success(flow, spec.name, input_hash, current_run)
    if hit is None:
        return None
    run_id, output_hash = hit
    finished = [
        e.payload for e in store.run_events(run_id)
        if e.event == "step_finished" and e.step == spec.name and e.payload.get("outputs")
    ]  # fmt: skip
    if not finished:
        return None
    outputs: list[dict[str, Any]] = finished[-1]["outputs"]
    if any(o.get("codec") == VOLATILE for o in outputs):
        return None  # never reached through a volatile hash; a volatile output itself has nothing to reuse
    if spec.output_names:
        value: Any = {o["name"]: store.load_value(run_id, spec.name, o["name"], o) for o in outputs}
    else:
        value = store.load_value(run_id, spec.name, outputs[0]["name"], outputs[0])
    return run_id, (value, outputs), output_hash
