"""The magics: ``%%step``, ``%step``, ``%flow`` and ``%%flowsql``.

Thin by design: each parses its arguments and calls :class:`Session` (or
``flownb.sql``), the same API a script uses. Errors flownb raises on purpose
become one-line usage errors, never tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand

from flownb.errors import FlownbError
from flownb.notebook.args import (
    FLOW_HELP,
    HelpShown,
    flow_parser,
    flow_usage,
    key_values,
    names,
    split_sql_line,
    sql_parser,
    step_parser,
    typed,
)  # fmt: skip

if TYPE_CHECKING:
    from flownb.engine.run import Run
    from flownb.notebook.session import Session
    from flownb.notebook.view import LiveView

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """--help ends quietly; flownb's own errors become one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HelpShown:
            return None
        except FlownbError as exc:
            raise UsageError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@magics_class
class FlowMagics(Magics):
    def __init__(self, shell: Any, session: Session) -> None:
        super().__init__(shell)
        self.session = session

    # -- %%step / %step ------------------------------------------------------------------

    @line_cell_magic
    @no_var_expand  # {{ templates }} must reach the step as written, not as IPython's {expressions}
    @_friendly
    def step(self, line: str, cell: str | None = None) -> None:
        """Register a cell (``%%step NAME``) or a line (``%step NAME --kind K``) as a step."""
        prog = "%%step" if cell is not None else "%step"
        args = step_parser(prog).parse(line)
        options = _step_options(args)
        kind_options = self._kind_options(args)
        if cell is None:
            if args.kind == "python":
                raise UsageError(f"a python step needs a cell body: write %%step {args.name} above the code")
            self.session.define_step(args.name, kind=args.kind, flow=args.flow, options=options,
                                     kind_options=kind_options)  # fmt: skip
            return
        self.session.define_cell(args.name, cell, flow=args.flow, kind=args.kind, options=options,
                                 cell_text=f"%%step {line}\n{cell}", kind_options=kind_options)  # fmt: skip

    def _kind_options(self, args: argparse.Namespace) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for opt in ("message", "command", "url", "method", "prompt", "model", "system", "module", "cwd"):
            if getattr(args, opt) is not None:
                out[opt] = getattr(args, opt)
        if args.input is not None:
            out["input"] = typed(args.input)
        if args.approval_timeout is not None:
            out["approval_timeout"] = args.approval_timeout
        if args.subflow is not None:
            out["flow"] = self.session.flow(args.subflow)
        out.update({k.replace("-", "_"): v for k, v in key_values(args.option, "--option").items()})
        return out

    # -- %flow ------------------------------------------------------------------------------

    @line_magic
    @_friendly
    def flow(self, line: str) -> Any:
        """Run and inspect flows: ``%flow --help`` lists the commands."""
        if not line.strip():
            print(FLOW_HELP)
            return None
        args = flow_parser().parse(line)
        handler = getattr(self, f"_flow_{args.command}")
        return handler(args)

    def _flow_run(self, args: argparse.Namespace) -> Any:
        s = self.session
        run = s.start(args.flow, params=key_values(args.param), approve=args.approve or (),
                      executor=args.executor, timeout=args.timeout, in_order=args.in_order)  # fmt: skip
        shown = RunView(run, s.view(run.id, args.flow) if s.live else None, self.shell)
        shown.show()  # at once, also when assigned: `view = %flow run` shows the view
        if not args.wait:
            return shown
        _wait_loudly(run)
        shown.show_final()
        print(_one_line(run))
        if run.status != "succeeded":
            raise UsageError(f"run {run.id} {run.status}: {run.error}")
        return run  # the view is on screen already; `run = %flow run --wait` keeps the handle

    def _flow_resume(self, args: argparse.Namespace) -> Any:
        if args.run is not None or self.session.last_run_id is not None:
            paused = self.session.any_run(args.run, args.flow)
            if paused.status == "paused":
                paused.resume()
                print(f"resuming paused run {paused.id}")
                return None
        run = self.session.resume(args.run, args.flow)
        shown = RunView(run, self.session.view(run.id, args.flow) if self.session.live else None, self.shell)
        shown.show()
        return shown

    def _flow_watch(self, args: argparse.Namespace) -> Any:
        view = self.session.view(args.run, args.flow)
        shown = RunView(self.session.run_handle(view.state.run_id), view, self.shell)
        shown.show()
        return shown

    def _flow_approve(self, args: argparse.Namespace) -> None:
        decision = "rejected" if args.reject else "approved"
        print(self.session.decide(args.run, args.step, decision, comment=args.comment, via="magic", flow=args.flow))

    def _flow_cancel(self, args: argparse.Namespace) -> None:
        run = self.session.any_run(args.run, args.flow)
        run.cancel()
        print(f"cancelling run {run.id}")

    def _flow_pause(self, args: argparse.Namespace) -> None:
        run = self.session.any_run(args.run, args.flow)
        run.pause()
        print(f"pausing run {run.id}: running steps finish, no new one starts; %flow resume {run.id} goes on")

    def _flow_status(self, args: argparse.Namespace) -> Any:
        import flownb

        run_id = args.run or self.session.last_run_id
        db = self.session.flow(args.flow).db
        if run_id is None:
            return flownb.history(db, limit=1)
        run = self.session.run_handle(run_id)
        if run is not None:
            print(_one_line(run))
        from flownb.store import open_store

        store = open_store(db)
        return store.runs_frame(store.resolve_run_id(run_id))

    def _flow_history(self, args: argparse.Namespace) -> Any:
        import flownb

        return flownb.history(self.session.flow(args.flow).db, limit=args.limit)

    def _flow_steps(self, args: argparse.Namespace) -> Any:
        import pandas as pd

        graph = self.session.graph(args.flow)
        rows = []
        for name, spec in graph.specs.items():
            info = getattr(spec.fn, "__flownb_cell__", None)
            rows.append({
                "step": name, "kind": spec.kind, "level": graph.levels.get(name),
                "depends_on": ", ".join(sorted(spec.deps)), "outputs": ", ".join(info.outputs) if info else name,
                "retries": spec.retry.retries, "timeout": spec.timeout,
            })  # fmt: skip
        return pd.DataFrame(rows)

    def _flow_show(self, args: argparse.Namespace) -> Any:
        from flownb.render import flow_picture

        return flow_picture(self.session.graph(args.flow))

    def _flow_reset(self, args: argparse.Namespace) -> None:
        self.session.reset(args.flow)
        print(f"flow {self.session.flow(args.flow).name!r} has no steps now")

    def _flow_serve(self, args: argparse.Namespace) -> Any:
        from flownb.notebook.serving import serve

        return serve(self.session, flow=args.flow, host=args.host, port=args.port, stop=args.stop)

    def _flow_schedule(self, args: argparse.Namespace) -> Any:
        from flownb.notebook.serving import schedule

        return schedule(self.session, args.flow, cron=args.cron, tz=args.tz, params=key_values(args.param),
                        name=args.name, catchup=args.catchup, remove=args.remove)  # fmt: skip

    # -- %%flowsql --------------------------------------------------------------------------------

    @line_cell_magic
    @no_var_expand  # $name is a DuckDB parameter: IPython must not paste the variable into the query
    @_friendly
    def flowsql(self, line: str, cell: str | None = None) -> Any:
        """SQL over the store, as a DataFrame: ``%flowsql QUERY`` or a ``%%flowsql`` cell."""
        import flownb

        prog = "%%flowsql" if cell is not None else "%flowsql"
        options, target, query = split_sql_line(line, prog)
        args = sql_parser(prog).parse(options)
        if cell is not None:
            query = (query + "\n" + cell).strip()
        if not query:
            raise UsageError(f"{prog} needs a query over runs, steps, events, approvals or outputs")
        params: dict[str, Any] | None = None
        if args.param:
            ns = self.session.shell.user_ns
            missing = [n for n in args.param if n not in ns]
            if missing:
                raise UsageError(f"--param {missing[0]}: the notebook has no variable {missing[0]!r}")
            params = {n: _sql_value(ns[n]) for n in args.param}
        db = args.db or self.session.flow().db
        df = flownb.sql(query, db, params)
        if target is None:
            return df
        self.session.shell.user_ns[target] = df  # `df << SELECT ...`, as jupysql captures
        return None


class RunView:
    """What ``%flow run`` answers: the live view, and the run as ``.run``.

    The magic shows the view itself (``show``), so that ``view = %flow run``
    shows it too; displaying the object again in the same cell adds nothing,
    in a later cell it shows the view once more.
    """

    def __init__(self, run: Run | None, view: LiveView | None, shell: Any = None) -> None:
        self.run = run
        self.view = view
        self._shell = shell
        self._shown_in: int | None = None
        self._final_shown = False

    def show(self) -> None:
        """Display the live view now (a widget; a one-line text where widgets cannot show)."""
        from IPython.display import display

        self._shown_in = self._cell()
        if self.view is None:
            print(repr(self))
            return
        data = {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.view.widget.model_id,
            },
            "text/plain": f"<flownb live view of run {self.view.state.run_id} of flow {self.view.state.flow!r}>",
        }  # fmt: skip
        display(data, raw=True)  # type: ignore[no-untyped-call]

    def show_final(self, timeout: float = 10.0) -> None:
        """Once the run has ended: display its final picture and summary as static HTML (once).

        Saved notebooks keep it (nbclient, papermill, GitHub, nbviewer); under a live
        view in the same cell the view's stylesheet hides it.
        """
        from IPython.display import display

        if self.view is None or self._final_shown or not self.view.wait_final(timeout):
            return
        static = self.view.static_html()
        if static is not None:
            self._final_shown = True
            text = _one_line(self.run) if self.run is not None else f"run {self.view.state.run_id}"
            display({"text/html": static, "text/plain": text}, raw=True)  # type: ignore[no-untyped-call]

    def _ipython_display_(self) -> None:
        if self._shown_in is not None and self._shown_in == self._cell():
            return  # the magic showed it in this very cell
        self.show()

    def _cell(self) -> int | None:
        count = getattr(self._shell, "execution_count", None)
        return count if isinstance(count, int) else None

    def wait(self, timeout: float | None = None) -> Run:
        """Wait for the run; then show its final picture and summary (the saved notebook's record)."""
        if self.run is None:
            raise FlownbError("this run is not active in this kernel")
        run = self.run.wait(timeout)
        self.show_final()
        return run

    def __repr__(self) -> str:
        if self.run is not None:
            return repr(self.run)
        return f"<view of run {self.view.state.run_id if self.view else '?'}>"


# `%flow?`, `%%step?` and `%flowsql?` show the whole usage, not a one-line docstring
FlowMagics.flow.__doc__ = flow_usage()
FlowMagics.step.__doc__ = step_parser("%%step").format_help()
FlowMagics.flowsql.__doc__ = sql_parser("%%flowsql").format_help()


def _step_options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "after": names(args.after), "retries": args.retries, "backoff": args.backoff,
        "retry_delay": args.retry_delay, "max_delay": args.max_delay, "on_failure": args.on_failure,
        "max_iterations": args.max_iterations, "cache": args.cache, "trigger_rule": args.trigger_rule,
        "max_failures": args.max_failures,
    }  # fmt: skip
    for opt in ("timeout", "when", "foreach", "concurrency", "repeat_until", "fallback"):
        if getattr(args, opt) is not None:
            out[opt] = getattr(args, opt)
    return out


def _sql_value(value: Any) -> Any:
    """DuckDB binds plain values; others travel as JSON text (never pasted into the query)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float | bool) for v in value):
        return list(value)
    return json.dumps(value, default=str)


def _wait_loudly(run: Run) -> None:
    """Block until the run ends; say how to decide a pending approval instead of hanging silently."""
    told: set[str] = set()
    try:
        while not run.done:
            with contextlib.suppress(TimeoutError):
                run.wait(0.5)
            for step in run.pending_approvals:
                if step not in told:
                    told.add(step)
                    print(
                        f"run {run.id} waits for approval of {step!r}. This cell blocks until it is decided, "
                        f"so the buttons cannot answer now: run `flownb approve {run.id} {step}` in a terminal, "
                        f"or interrupt the kernel, then `%flow approve {run.id} {step}` (add --reject to reject).",
                        file=sys.stderr, flush=True,
                    )  # fmt: skip
    except KeyboardInterrupt:
        print(f"stopped waiting; run {run.id} goes on in the background (%flow status {run.id})")
        time.sleep(0)


def _one_line(run: Run) -> str:
    counts: dict[str, int] = {}
    for status in run.step_status.values():
        counts[status] = counts.get(status, 0) + 1
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"run {run.id} of flow {run.flow!r}: {run.status} ({parts})"
