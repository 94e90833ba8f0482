"""The engine's own event-loop thread, and the runs it holds.

The engine runs on a thread of its own, in a kernel and outside one: a long
synchronous cell never stalls a run, ``run.wait()`` works everywhere, and no
nested event loop is ever needed. While the loop sleeps, a worker that finished
a plain step may act for it (see executors/loop.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flownb.engine import ownership
from flownb.engine.clock import SYSTEM, Clock
from flownb.engine.execution import RunExecution
from flownb.engine.run import Run
from flownb.errors import FlownbError, RunExists
from flownb.executors import capture
from flownb.executors.loop import EngineLoop
from flownb.store.base import open_store

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from flownb.engine.run import Run
    from flownb.model.flow import RunPlan

T = TypeVar("T")


class Runtime:
    """One per process: the loop thread, the active runs, per-flow run slots."""

    def __init__(self) -> None:
        self.loop = EngineLoop()
        self._thread = threading.Thread(target=self._serve, name="flownb-engine", daemon=True)
        self._thread.start()
        self.active: dict[str, RunExecution] = {}
        self._run_slots: dict[str, asyncio.Semaphore] = {}
        #: the time retries, approval polls and records read (tests may give another)
        self.clock: Clock = SYSTEM
        self.notebook: str | None = os.environ.get("FLOWNB_NOTEBOOK")
        self._start_hooks: list[Callable[[RunExecution], None]] = []

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the engine loop and return its result (from any other thread)."""
        if threading.current_thread() is self._thread:
            return fn()

        async def wrapper() -> T:
            return fn()

        result: T = self.submit(wrapper()).result()
        return result

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def create(
        self, plan: RunPlan, params: dict[str, Any], *, parent: RunExecution | None = None,
        timeout: float | None = None, run_id: str | None = None, restored: Any = None, trigger: str = "manual",
    ) -> RunExecution:  # fmt: skip
        store = open_store(plan.db)
        ex = RunExecution(
            self, plan, params, store, run_id or new_run_id(), timeout=timeout,
            parent_run_id=parent.run_id if parent else None, depth=parent.depth + 1 if parent else 0,
            restored=restored, clock=self.clock, trigger=parent.trigger if parent else trigger,
        )  # fmt: skip
        self.active[ex.run_id] = ex
        for hook in list(self._start_hooks):
            hook(ex)
        return ex

    def watch_starts(self, hook: Callable[[Run], None]) -> Callable[[], None]:
        """Call ``hook(run)`` with each run this process creates (sub-flows too: their
        ``parent_run_id`` says so), before it starts: ``run.observe(observer, replay=False)``
        in the hook hears every event. Returns what stops the watching."""
        from flownb.engine.run import Run

        def on_create(ex: RunExecution) -> None:
            hook(Run(ex, self))

        self._start_hooks.append(on_create)

        def stop() -> None:
            if on_create in self._start_hooks:
                self._start_hooks.remove(on_create)

        return stop

    def forget(self, ex: RunExecution) -> None:
        self.active.pop(ex.run_id, None)

    @contextlib.asynccontextmanager
    async def run_slot(self, plan: RunPlan, ex: RunExecution) -> AsyncIterator[None]:
        """At most ``max_runs`` runs of one flow (by name) at a time; others wait as pending."""
        if plan.max_runs is None:
            yield
            return
        slot = self._run_slots.setdefault(plan.name, asyncio.Semaphore(plan.max_runs))
        async with slot:
            yield


_RUNTIME: Runtime | None = None
_RUNTIME_LOCK = threading.Lock()


def runtime() -> Runtime:
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            _RUNTIME = Runtime()
        return _RUNTIME


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


TRIGGERS = ("manual", "cli", "api", "schedule", "webhook")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def start_run(
    plan: RunPlan, params: dict[str, Any], *, timeout: float | None = None, trigger: str = "manual",
    run_id: str | None = None,
) -> Run:  # fmt: skip
    """Start a run of ``plan`` (validated by the caller) in the background; its handle at once.

    ``trigger`` says what started it (recorded in ``runs.trigger``); ``run_id`` names the
    run (a schedule derives one from its fire time): refused when a run of that id exists,
    so one name starts one run.
    """
    if trigger not in TRIGGERS:
        raise FlownbError(f"trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}")
    rt = runtime()
    capture.install()
    store = open_store(plan.db)
    store.check_writable()  # a read-only store: refused here, in one line
    if run_id is not None:
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise FlownbError(f"run_id {run_id!r} is not a run id: letters, digits and _ . : - (up to 128)")
        store.flush()
        if run_id in rt.active or store.run_events(run_id):
            raise RunExists(f"a run {run_id!r} exists already in {store.path}; give another run_id")
    ex = rt.create(plan, params, timeout=timeout, trigger=trigger, run_id=run_id)
    ownership.watch(rt, ex.store)  # its lease comes with its first record; a lost one stops it here
    rt.loop.call_soon_threadsafe(ex.start)
    return Run(ex, rt)


def resume_run(
    plan: RunPlan, run_id: str, *, params: dict[str, Any] | None = None, timeout: float | None = None
) -> Run:
    """Resume a run: claim it (``RunActive`` while another live process owns it), then restore it."""
    rt = runtime()
    capture.install()
    for ex in rt.active.values():
        if ex.run_id.startswith(run_id):
            raise FlownbError(f"run {ex.run_id} is still running in this process; wait for it or cancel it")
    store = open_store(plan.db)
    ownership.watch(rt, store)
    restored = ownership.claim(store, plan, run_id)
    ex = rt.create(
        plan, {**restored.params, **(params or {})}, timeout=timeout, run_id=restored.run_id, restored=restored
    )
    rt.loop.call_soon_threadsafe(ex.start)
    return Run(ex, rt)


def find_run(run_id: str) -> Run | None:
    """The handle of the run ``run_id`` (or a unique prefix) if it goes on in this process."""
    from flownb.engine.run import Run

    ex = find_active(run_id)
    return None if ex is None else Run(ex, runtime())


def find_active(run_id: str) -> RunExecution | None:
    rt = runtime()
    for ex in list(rt.active.values()):
        if ex.run_id == run_id or ex.run_id.startswith(run_id):
            return ex
    return None

