"""The per-kernel state of the notebook layer, and the API the magics call.

One :class:`Session` per IPython shell holds the flows, the ``%%step`` cells
of each flow, and the runs it follows. The magics only parse arguments and
call these methods; a script or the CLI can call them too. Running a notebook
headless, as ``flownb run NB.ipynb`` does::

    from IPython.core.interactiveshell import InteractiveShell
    from flownb.notebook.session import Session

    shell = InteractiveShell.instance()
    session = Session.load(shell)            # %load_ext flownb, without a frontend
    session.execute_notebook("NB.ipynb")     # every code cell in order (defines the steps)
    run = session.start(params={"source": "x.csv"}, approve=["all"])
    run.wait()                               # a flownb.Run: .status, .outputs, .error

``execute_notebook`` skips ``%flow run`` lines (the caller starts the run
itself) and raises :class:`NotebookCellFailed` naming the cell that failed.
``Session.load`` with ``live=False`` creates no widgets.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flownb.api import Flow
from flownb.engine.observe import Observer
from flownb.engine.runtime import find_run, runtime
from flownb.errors import FlowDefinitionError, FlownbError
from flownb.notebook.cellfn import CellInfo, rebind
from flownb.notebook.cells import CellDef, CellRegistry, KindCell, Positions
from flownb.notebook.tracking import Tracker
from flownb.steps.registry import get_kind
from flownb.store.base import Decision, open_store, utcnow

if TYPE_CHECKING:
    from flownb.engine.run import Run
    from flownb.model.flow import Graph
    from flownb.notebook.view import LiveView
    from flownb.store.base import Event

_RUN_LINE = re.compile(r"%flow\s+run\b")
_STEP_CELL = re.compile(r"^\s*(#[^\n]*\n\s*)*%%?step\b")
_FLOWSQL = re.compile(r"^\s*%%?flowsql\b")
_SKIP_LINE = re.compile(r"^\s*%flow\s+(run|watch|resume|cancel|approve)\b.*$", re.M)


class NotebookCellFailed(FlownbError):
    """A cell of a notebook run headless raised; the message names the cell."""


class Session:
    """Flows, cell steps and followed runs of one IPython shell."""

    _sessions: dict[int, Session] = {}  # noqa: RUF012  (one per shell, keyed by id)

    def __init__(self, shell: Any, *, live: bool = True) -> None:
        self.shell = shell
        self.live = live
        self.flows: dict[str, Flow] = {}
        self.cells: dict[str, CellRegistry] = {}
        self.default_flow = default_flow_name(shell)
        self.cell_id: str | None = None
        #: the number of the code cell being defined, when known (headless: its place in the file)
        self.cell_number: int | None = None
        self._saved: tuple[str, float, dict[str, tuple[int, int]]] | None = None
        self.runs: dict[str, Run] = {}
        self.last_run_id: str | None = None
        self.tracker = Tracker(self._publish)
        self._catching_up: set[str] = set()  # runs whose end publishes the latest versions reached
        self._auto_approve: list[str] = []
        #: stops following the runs this process starts (set while attached)
        self._stop_watching: Callable[[], None] | None = None
        rt = runtime()
        if rt.notebook is None:
            rt.notebook = notebook_path(shell)

    # -- life cycle ------------------------------------------------------------------------

    @classmethod
    def load(cls, shell: Any, *, live: bool = True) -> Session:
        """The shell's session, creating it and registering the magics on first use."""
        from flownb.notebook import extension

        found = cls._sessions.get(id(shell))
        if found is None:
            extension.load(shell, live=live)
            found = cls._sessions[id(shell)]
        return found

    def attach(self) -> None:
        self._stop_watching = runtime().watch_starts(self._on_start)
        self._sessions[id(self.shell)] = self

    def detach(self) -> None:
        stop, self._stop_watching = self._stop_watching, None
        if stop is not None:
            stop()
        self._sessions.pop(id(self.shell), None)

    def pre_run_cell(self, info: Any) -> None:
        """IPython's pre_run_cell event: the id of the cell about to run (the step's origin)."""
        self.cell_id = getattr(info, "cell_id", None) or None

    # -- flows and definitions --------------------------------------------------------------

    def flow(self, name: str | None = None, *, executor: Any = None) -> Flow:
        name = name or self.default_flow
        flow = self.flows.get(name)
        if flow is None:
            flow = self.flows[name] = Flow(name, executor=executor)
            self.cells[name] = CellRegistry(
                flow, lambda: self.shell.user_ns if self.shell is not None else {}, shell=self.shell,
                positions=self.saved_positions,
            )  # fmt: skip
        elif executor is not None:
            flow.executor = None if executor == "local" else executor
        return flow

    def _origin(self, name: str) -> tuple[str, ...]:
        return ("cell", self.cell_id) if self.cell_id else ("cell", name)

    def define_cell(self, name: str, body: str, *, flow: str | None = None, kind: str = "python",
                    options: Mapping[str, Any] | None = None, cell_text: str | None = None,
                    kind_options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """``%%step NAME``: register a cell as a step (it does not run)."""
        f = self.flow(flow)
        options = dict(options or {})
        if kind == "python":
            if kind_options:
                raise FlowDefinitionError(f"step {name!r}: {', '.join(kind_options)} apply to other kinds")
            text = cell_text if cell_text is not None else f"%%step {name}\n{body}"
            transformed = _transform(self.shell, body)
            cell = CellDef(name, transformed, text, self._origin(name), options, number=self.cell_number)
            self.cells[f.name].define(cell)
            return
        merged = dict(kind_options or {})
        if body.strip():
            merged.update(body_options(kind, name, body))
        self.define_step(name, kind=kind, flow=flow, options=options, kind_options=merged)

    def define_step(self, name: str, *, kind: str, flow: str | None = None,
                    options: Mapping[str, Any] | None = None,
                    kind_options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """``%step NAME --kind K``: a step of another kind, with its options."""
        f = self.flow(flow)
        registry = self.cells[f.name]
        origin = self._origin(name)
        f.step(name=name, kind=kind, origin=origin, **dict(options or {}), **dict(kind_options or {}))
        registry.define_kind(KindCell(name, kind, origin, self.cell_number))
        registry.sync()

    def reset(self, flow: str | None = None) -> None:
        f = self.flow(flow)
        f.clear()
        self.cells[f.name].clear()

    def graph(self, flow: str | None = None) -> Graph:
        f = self.flow(flow)
        self.cells[f.name].sync()
        return f.graph()

    # -- runs -------------------------------------------------------------------------------

    def start(self, flow: str | None = None, *, params: Mapping[str, Any] | None = None,
              approve: Iterable[str] = (), executor: Any = None, timeout: float | None = None,
              in_order: bool | None = None, trigger: str = "manual", run_id: str | None = None) -> Run:  # fmt: skip
        """Start a run of the flow (after binding its cells again) and return at once.

        ``in_order=True`` chains every step cell in notebook order (``%flow run --in-order``).
        """
        f = self.flow(flow, executor=executor)
        registry = self.cells[f.name]
        if in_order is not None:
            registry.in_order = in_order
        registry.sync(snapshot=self._snapshot())
        self._auto_approve = list(approve)
        try:
            run = f.run(dict(params or {}), timeout=timeout, trigger=trigger, run_id=run_id)
        finally:
            self._auto_approve = []
        return self._remember(run)

    def resume(self, run_id: str | None = None, flow: str | None = None) -> Run:
        f = self.flow(flow)
        self.cells[f.name].sync(snapshot=self._snapshot())
        if run_id is None:
            run_id = self.resumable(f)
        return self._remember(f.resume(run_id))

    def resumable(self, f: Flow) -> str:
        latest = open_store(f.db).latest_run(f.name)
        if latest is None:
            raise FlownbError(f"flow {f.name!r} has no runs to resume; start one with %flow run")
        run_id, status = latest
        if status == "succeeded":
            raise FlownbError(f"the last run of flow {f.name!r}, {run_id}, succeeded; there is nothing to resume")
        return run_id

    def _remember(self, run: Run) -> Run:
        self.runs[run.id] = run
        self.last_run_id = run.id
        return run

    def run_handle(self, run_id: str | None) -> Run | None:
        """The handle of a run active in this process (a prefix is enough)."""
        run_id = run_id or self.last_run_id
        if run_id is None:
            return None
        for rid, run in self.runs.items():
            if rid.startswith(run_id) and not run.done:
                return run
        return find_run(run_id)

    def any_run(self, run_id: str | None, flow: str | None = None) -> Run:
        """A handle on a run of this kernel or any other process (default: the last run started here)."""
        import flownb

        run_id = run_id or self.last_run_id
        if run_id is None:
            raise FlownbError("no run yet in this kernel; give a run id (see %flow history)")
        here = self.run_handle(run_id)
        return here if here is not None else flownb.attach(run_id, self.flow(flow).db)

    def decide(self, run_id: str, step: str, decision: str, *, comment: str | None = None,
               by: str | None = None, via: str = "magic", flow: str | None = None) -> str:  # fmt: skip
        """Approve or reject a waiting step; returns where the decision went."""
        run = self.run_handle(run_id)
        if run is not None:
            (run.approve if decision == "approved" else run.reject)(step, comment, by, via=via)
            return f"{decision} {step!r} of run {run.id}"
        store = open_store(self.flow(flow).db)
        full = _full_run_id(store, run_id)
        from flownb.engine.run import current_user

        store.post_decision(Decision(full, step, decision, by or current_user(), comment, via, utcnow()))
        return f"{decision} {step!r} of run {full} (posted for the process that runs it)"

    def _on_start(self, run: Run) -> None:
        self.tracker.on_start(run)
        wanted = self._auto_approve
        if wanted and run.parent_run_id is None:
            run.observe(_AutoApprover(run, wanted), replay=False)

    def _snapshot(self) -> dict[str, Any]:
        """The notebook's names as a run starts: what its steps see of the namespace."""
        return dict(self.shell.user_ns) if self.shell is not None else {}

    def _publish(self, run: Run, name: str, value: Any) -> None:
        """A cell step succeeded: the names whose final version it wrote become notebook variables."""
        info = self._cell_info(run, name)
        if info is None:
            return
        ns = self.shell.user_ns
        for var, found, present in _versions(info, value):
            if var not in info.final:
                continue
            if present:
                ns[var] = rebind(found, ns)
            elif var in info.deletes:
                ns.pop(var, None)
        if not run.done and run.id not in self._catching_up:
            self._catching_up.add(run.id)
            run.add_done_callback(self._publish_latest)

    def _publish_latest(self, run: Run) -> None:
        """A run that did not reach a name's last writer leaves the latest version it did reach,
        as a notebook run top to bottom that stopped at a failing cell does."""
        latest: dict[str, tuple[int, Any, bool, bool]] = {}
        finals: set[str] = set()
        self._catching_up.discard(run.id)
        for name, value in run.outputs.items():
            info = self._cell_info(run, name)
            if info is None:
                continue
            finals |= info.final
            for var, found, present in _versions(info, value):
                if var not in latest or latest[var][0] < info.position:
                    latest[var] = (info.position, found, present, var in info.deletes)
        ns = self.shell.user_ns
        for var, (_, found, present, deleted) in latest.items():
            if var in finals:
                continue  # published when its final writer succeeded
            if present:
                ns[var] = rebind(found, ns)
            elif deleted:
                ns.pop(var, None)

    def _cell_info(self, run: Run, name: str) -> CellInfo | None:
        spec = run.graph.specs.get(name)
        if spec is None or spec.origin[:1] != ("cell",) or self.shell is None:
            return None
        info = getattr(spec.fn, "__flownb_cell__", None)
        return info if isinstance(info, CellInfo) else None

    def saved_positions(self) -> Positions:
        """Each cell id's place in the saved notebook and its code cell number, when there is one."""
        path = notebook_path(self.shell)
        if not path or not os.path.isfile(path):
            return {}
        mtime = os.path.getmtime(path)
        if self._saved is None or self._saved[:2] != (path, mtime):
            self._saved = (path, mtime, _cell_positions(path))
        return self._saved[2]

    # -- views --------------------------------------------------------------------------------

    def view(self, run_id: str, flow: str | None = None) -> LiveView:
        """A live view of any run: started here, active here, or replayed from the store."""
        from flownb.notebook.view import LiveView

        store = open_store(self.flow(flow).db)
        active = find_run(run_id)  # a run just started may not be in the store yet
        full = active.id if active is not None else _full_run_id(store, run_id)
        graph = active.graph if active is not None else self._graph_for(store, full)
        state = self.tracker.follow(store, full, graph.flow, list(graph.specs))
        view = LiveView(state, graph, lambda step, decision, comment: self._click(view, step, decision, comment))
        self.tracker.subscribe(full, view.poke)
        view.poke()
        return view

    def _click(self, view: LiveView, step: str, decision: str, comment: str | None) -> None:
        try:
            self.decide(view.state.run_id, step, decision, comment=comment, via="widget", flow=view.state.flow)
        except FlownbError as exc:
            view.state.card_error(step, str(exc))
            view.poke()

    def _graph_for(self, store: Any, run_id: str) -> Graph:
        events = store.run_events(run_id)
        name = next((e.payload.get("flow") for e in events if e.event == "run_started"), None) or "?"
        if name in self.flows:
            try:
                return self.graph(name)
            except FlownbError:
                pass
        return graph_from_events(name, events)

    # -- headless -------------------------------------------------------------------------------

    def execute_notebook(self, path: str | os.PathLike[str]) -> None:
        """Define a notebook's flow without running it, as ``flownb run`` needs.

        The set-up cells (imports, helpers, constants) before the first cell that
        starts a run execute in order, silently; every ``%%step``/``%step`` cell
        defines its step wherever it stands. Cells after the first run (reading
        results, SQL over the history) are analysis, and are skipped; so are lines
        that steer runs (``%flow run/watch/resume/cancel/approve``).
        """
        from flownb.notebook.nbfile import read_notebook

        nb = read_notebook(path)
        setup = True
        number = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            number += 1
            step_cell = _STEP_CELL.match(cell.source) is not None
            if _RUN_LINE.search(cell.source) and not step_cell:
                setup = False
            if not (setup or step_cell) or _FLOWSQL.match(cell.source):
                continue
            source = _SKIP_LINE.sub("", cell.source)
            self.cell_id = cell.get("id")
            self.cell_number = number
            try:
                result = self.shell.run_cell(source, store_history=False, silent=True)
            finally:
                self.cell_number = None
            if not result.success:
                err = result.error_in_exec or result.error_before_exec
                raise NotebookCellFailed(f"cell [{number}] of {path} failed: {type(err).__name__}: {err}")


def _transform(shell: Any, body: str) -> str:
    """IPython syntax (``%timeit``, ``!ls``, ``x?``) into Python, as the shell's input transformers
    do it. Only the static ones: automagic and autocall look at the namespace *now*, when
    the names a step will see do not exist yet (``config["b"] = 2`` is not ``%config``)."""
    if shell is None:
        return body
    manager = getattr(shell, "input_transformer_manager", None)
    return str(manager.transform_cell(body)) if manager is not None else str(shell.transform_cell(body))


def _versions(info: CellInfo, value: Any) -> list[tuple[str, Any, bool]]:
    """(name, value, present) for each output of a cell step's value."""
    if info.bare:
        return [(info.outputs[0], value, True)] if info.outputs else []
    if info.foreach and isinstance(value, list):
        return [(v, [x.get(v) if isinstance(x, Mapping) else None for x in value], True) for v in info.outputs]
    if not isinstance(value, Mapping):
        return []
    return [(v, value.get(v), v in value) for v in info.outputs]


def _cell_positions(path: str) -> dict[str, tuple[int, int]]:
    from flownb.notebook.nbfile import read_notebook

    try:
        nb = read_notebook(path)
    except FlownbError:  # a notebook being written, or not one: definition order then
        return {}
    out: dict[str, tuple[int, int]] = {}
    number = 0
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code":
            number += 1
            if cell.get("id"):
                out[str(cell["id"])] = (index, number)
    return out


def default_flow_name(shell: Any) -> str:
    path = notebook_path(shell)
    if not path:
        return "notebook"
    stem = re.sub(r"\W", "_", Path(path).stem).strip("_")
    return stem or "notebook"


def notebook_path(shell: Any) -> str | None:
    """The notebook's path: JupyterLab/Notebook 7 set JPY_SESSION_NAME, VS Code a variable."""
    ns = getattr(shell, "user_ns", None) or {}
    return ns.get("__vsc_ipynb_file__") or os.environ.get("JPY_SESSION_NAME") or None


def body_options(kind: str, step: str, body: str) -> dict[str, Any]:
    """The options a cell body gives a step of another kind (its main option)."""
    if kind == "http":
        from flownb.steps.http import parse_http_request

        try:
            return parse_http_request(body)
        except ValueError as exc:
            raise FlowDefinitionError(f"step {step!r}: {exc}") from None
    main = get_kind(kind, step=step).main_option
    if main is None:
        raise FlowDefinitionError(f"step {step!r}: a {kind} step takes no cell body; use %step {step} --kind {kind}")
    return {main: body.strip("\n") if kind == "shell" else body.strip()}


def graph_from_events(flow: str, events: list[Any]) -> Graph:
    """The graph of a run whose flow this kernel does not define: the steps and edges its
    ``run_started`` recorded (all of them, before any ran), else its step events' steps."""
    from flownb.model.flow import Graph, recorded_graph
    from flownb.model.spec import StepSpec

    shape = next((e.payload.get("steps") for e in events if e.event == "run_started"), None)
    if isinstance(shape, dict) and shape:
        return recorded_graph(flow, shape)
    specs: dict[str, StepSpec] = {}
    for e in events:
        if e.step and e.event.startswith("step_"):
            base = e.step.split("[", 1)[0]
            specs.setdefault(base, StepSpec(base, e.payload.get("kind", "python"), None, (), frozenset(), {}))
    return Graph(flow, specs)


def _full_run_id(store: Any, run_id: str) -> str:
    from flownb.engine.resume import read_run

    return str(read_run(store, run_id)[0].run_id)


class _AutoApprover(Observer):
    """Approve the listed gates as soon as they wait (``--approve STEP|all``)."""

    def __init__(self, run: Run, wanted: list[str]) -> None:
        self._run = run
        self._wanted = wanted

    def on_event(self, event: Event) -> None:
        step = event.step
        if event.event == "step_waiting" and step and ("all" in self._wanted or step in self._wanted):
            # heard on the engine's thread, as the gate starts to wait: decide from another,
            # which the engine hears on its next turn, when the gate is ready for it
            threading.Thread(target=self._approve, args=(step,), name="flownb-auto-approve", daemon=True).start()

    def _approve(self, step: str) -> None:
        with contextlib.suppress(FlownbError):  # decided meanwhile, or the run ended
            self._run.approve(step, "approved at start (--approve)", via="auto")
