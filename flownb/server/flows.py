"""The flows a server serves, by name, and the one way it starts their runs.

Every run the server starts (API, webhook, schedule) goes through
:meth:`ServedFlows.start`, which checks what it is given before the engine sees
it: the flow exists (404), params are a JSON object (400). A run id that exists
already is refused by the engine (409: the fire of a schedule that another
server or an earlier start already began).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flownb.errors import FlowDefinitionError, FlownbError, RunExists
from flownb.server.http import ApiError

if TYPE_CHECKING:
    from flownb.api import Flow
    from flownb.engine.run import Run
    from flownb.store.base import Store

#: starts a run: (params, trigger, run_id or None) -> the Run
Starter = Callable[[dict[str, Any], str, str | None], "Run"]


@dataclass
class ServedFlow:
    flow: Flow
    starter: Starter | None = None
    """How runs start when not by ``flow.run`` (a notebook's session binds its cells first)."""
    where: str | None = None
    """The notebook or FILE.py:NAME it was loaded from."""

    @property
    def name(self) -> str:
        return self.flow.name

    def start(self, params: dict[str, Any], trigger: str, run_id: str | None) -> Run:
        if self.starter is not None:
            return self.starter(params, trigger, run_id)
        return self.flow.run(params, trigger=trigger, run_id=run_id)


class ServedFlows:
    """The served flows, all recording to the server's one store."""

    def __init__(self, flows: Iterable[ServedFlow], store: Store) -> None:
        from flownb.store.base import open_store

        self.store = store
        self._flows: dict[str, ServedFlow] = {}
        for served in flows:
            if served.name in self._flows:
                raise FlownbError(f"two served flows are named {served.name!r}; serve one of them, or rename it")
            if open_store(served.flow.db) is not store:
                raise FlownbError(
                    f"flow {served.name!r} records to {open_store(served.flow.db).path}, not to the served store "
                    f"{store.path}: serve it with --db {open_store(served.flow.db).path}, or define it without db="
                )
            self._flows[served.name] = served
        if not self._flows:
            raise FlownbError("nothing to serve: give at least one flow (NOTEBOOK.ipynb or FILE.py:FLOW)")

    @property
    def names(self) -> list[str]:
        return sorted(self._flows)

    def __contains__(self, name: object) -> bool:
        return name in self._flows

    def get(self, name: str) -> ServedFlow:
        found = self._flows.get(name)
        if found is None:
            raise ApiError(404, f"no flow {name!r} is served here; served: {', '.join(self.names)}")
        return found

    def start(self, name: str, params: Any, *, trigger: str, run_id: str | None = None) -> Run:
        """Start a run of flow ``name``; ApiError (404, 400, 409) before anything started otherwise."""
        served = self.get(name)
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ApiError(400, f"params must be a JSON object, not {type(params).__name__}")
        try:
            return served.start(dict(params), trigger, run_id)
        except FlowDefinitionError as exc:
            raise ApiError(409, f"flow {name!r} cannot run as defined: {exc}") from None
        except RunExists as exc:  # a schedule's fire started already (by another server)
            raise ApiError(409, str(exc)) from None
        except FlownbError as exc:
            raise ApiError(400, str(exc)) from None

    def describe(self) -> list[dict[str, Any]]:
        """GET /api/flows: each flow's steps (name, kind, dependencies) and where it came from."""
        out = []
        for name in self.names:
            served = self._flows[name]
            try:
                graph = served.flow.graph()
                steps = [
                    {"name": s, "kind": spec.kind, "after": sorted(spec.deps), "level": graph.levels.get(s)}
                    for s, spec in graph.specs.items()
                ]
                error = None
            except FlownbError as exc:
                steps, error = [], str(exc)
            out.append({"name": name, "steps": steps, "source": served.where, "error": error})
        return out


def session_starter(session: Any, flow: str) -> Starter:
    """Runs of a notebook's flow start through its session, which binds the cells first."""

    def start(params: dict[str, Any], trigger: str, run_id: str | None) -> Run:
        run: Run = session.start(flow, params=params, trigger=trigger, run_id=run_id)
        return run

    return start
