"""``flownb.Flow``: a flow's definition, and the facade that runs and draws it.

The layers below stay one-way: the model defines and checks (FlowDefinition),
the engine runs a plan, render draws a graph. This class ties them together
for users, as the one object a script or a notebook holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flownb.errors import FlowDefinitionError
from flownb.model.flow import Durability, FlowDefinition
from flownb.steps.registry import get_kind

if TYPE_CHECKING:
    from flownb.engine.run import Run
    from flownb.store.schedules import Schedule


class Flow(FlowDefinition):
    """A durable workflow: steps with dependencies, run in the background.

    >>> flow = Flow("demo", db=":memory:")
    >>> @flow.step
    ... def a(): return 1
    >>> @flow.step
    ... def b(a): return a + 1
    >>> flow.run().wait().outputs["b"]
    2
    """

    def __init__(
        self, name: str, *, db: Any = None, max_concurrency: int = 8, durability: Durability = "sync",
        executor: Any = None, max_runs: int | None = None, in_order: bool = False,
    ) -> None:  # fmt: skip
        if isinstance(db, str) and db == ":memory:":
            # the flow's own store, for all its runs: no other flow's records in its history
            from flownb.store.base import open_store

            db = open_store(db)
        super().__init__(
            name, db=db, max_concurrency=max_concurrency, durability=durability, executor=executor,
            max_runs=max_runs, in_order=in_order, kinds=get_kind,
        )  # fmt: skip

    def run(
        self, params: Mapping[str, Any] | None = None, *, timeout: float | None = None, trigger: str = "manual",
        run_id: str | None = None,
    ) -> Run:  # fmt: skip
        """Start a run in the background and return its handle at once.

        ``trigger`` (manual, cli, api, schedule, webhook) is recorded in ``runs.trigger``;
        ``run_id`` names the run, and is refused (``RunExists``) when a run has it already.
        """
        from flownb.engine.runtime import start_run

        return start_run(self.plan(), dict(params or {}), timeout=timeout, trigger=trigger, run_id=run_id)

    def resume(self, run_id: str, *, params: Mapping[str, Any] | None = None, timeout: float | None = None) -> Run:
        """Finish an interrupted or failed run: committed steps are restored, not re-run.

        The run keeps its recorded parameters; ``params`` supplies values again that
        were redacted when recorded (secret-looking names such as ``token``).
        """
        from flownb.engine.runtime import resume_run

        return resume_run(self.plan(), run_id, params=dict(params or {}), timeout=timeout)

    def schedule(
        self, cron: str, *, tz: str = "UTC", params: Mapping[str, Any] | None = None, name: str | None = None,
        catchup: str = "latest",
    ) -> Schedule:  # fmt: skip
        """Run this flow at every time ``cron`` names, in time zone ``tz``, while a server serves it.

        Stored in the store's ``schedules`` table (``flownb serve`` fires it); a bad cron
        expression or time zone raises :class:`FlowDefinitionError` here, before anything is
        stored. ``name`` defaults to the flow's name, so scheduling again replaces the
        schedule (unchanged, it changes nothing). Fires missed while no server ran start one
        run (``catchup="latest"``) or none (``"none"``). Needs ``pip install 'flownb[serve]'``.
        """
        from flownb.store import schedules
        from flownb.store.base import open_store

        checked = schedules.validate(self.name, cron, tz=tz, params=params, name=name, catchup=catchup)
        return schedules.define(open_store(self.db), checked)

    def show(self) -> Any:
        """The static graph of the flow, as an SVG object notebooks display."""
        from flownb.render import flow_picture

        return flow_picture(self.graph())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from flownb.render import flow_svg

        try:
            return {"image/svg+xml": flow_svg(self.graph()), "text/plain": repr(self)}
        except FlowDefinitionError as exc:
            return {"text/plain": f"{self!r}: {exc}"}


def serve(
    flows: Iterable[Flow], *, db: Any = None, host: str = "127.0.0.1", port: int = 8642,
    starters: Mapping[str, Callable[[dict[str, Any], str, str | None], Run]] | None = None,
) -> Any:  # fmt: skip
    """Serve ``flows`` in the background (the REST API, webhooks, schedules, the web page), as
    ``flownb serve`` does in the foreground; the server at once, listening (``.url``, ``.stop()``).

    ``starters`` (flow name -> ``(params, trigger, run_id) -> Run``) start a flow's runs
    another way than ``flow.run`` (a notebook's session binds its cells first).
    """
    from flownb.server import make_server
    from flownb.server.flows import ServedFlow

    served = [ServedFlow(f, starter=(starters or {}).get(f.name)) for f in flows]
    return make_server(served, db=db, host=host, port=port).start()


def watch_runs(hook: Callable[[Run], None]) -> Callable[[], None]:
    """Call ``hook(run)`` with every run this process starts, before it starts (sub-flows
    too: their ``parent_run_id`` is set). ``run.observe(observer, replay=False)`` in the hook
    hears the run from its first event. Returns a function that stops the watching."""
    from flownb.engine.runtime import runtime

    return runtime().watch_starts(hook)


def run_svg(store: Any, run_id: str) -> str:
    """The picture of a recorded run (any process's), colored by what its events say of its steps."""
    from flownb.model.flow import recorded_graph
    from flownb.render import flow_svg
    from flownb.store.events import RunFold

    store.flush()
    fold = RunFold.of(store.run_events(store.resolve_run_id(run_id)))
    shape = fold.started.get("steps") or {n: {"kind": s.kind or "python"} for n, s in fold.base_steps().items()}
    graph = recorded_graph(fold.flow or "flow", shape)
    steps = {n: s for n, s in fold.base_steps().items() if n in graph.specs}
    return flow_svg(
        graph, {n: str(s.status) for n, s in steps.items()},
        durations={n: s.duration_ms for n, s in steps.items() if s.duration_ms is not None},
        attempts={n: s.attempts for n, s in steps.items()},
    )  # fmt: skip
