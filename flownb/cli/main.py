"""The ``flownb`` command: run notebooks and flows headless, inspect and decide runs.

Exit status: 0 when the run succeeded (or the command did what it was asked),
1 when a run failed, 2 for bad input (one clear line, no traceback).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from flownb.errors import FlownbError

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.db:
        os.environ["FLOWNB_DB"] = args.db
    try:
        return int(args.handler(args))
    except (UsageError, FlownbError) as exc:
        one_line = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        print(f"flownb: {one_line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("flownb: interrupted", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (argparse prints a usage block first)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}; see {self.prog} --help", file=sys.stderr)  # prog: "flownb run"
        sys.exit(EXIT_USAGE)


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (``float()`` alone takes ``-1``, ``nan`` and ``inf``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive, finite number of seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--db", help="the store file (default: FLOWNB_DB or .flownb/flownb.duckdb)")
    p = _Parser(prog="flownb", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run a notebook's flow, or FILE.py:FLOW, headless")
    run.add_argument("target", help="NOTEBOOK.ipynb, or FILE.py:NAME for a Flow defined in a Python file")
    run.add_argument("--param", action="append", default=[], metavar="K=V", help="a run parameter (repeatable)")
    run.add_argument("--approve", action="append", default=[], metavar="STEP|all", help="approve these gates at once")
    run.add_argument("--flow", help="which flow of the notebook (default: its only or default flow)")
    run.add_argument("--executor", help="local (default), dask, or a Dask scheduler address")
    run.add_argument("--timeout", type=_seconds, help="fail the run after this many seconds")
    run.add_argument("--in-order", action="store_true", help="run every step after the one defined above it")
    run.set_defaults(handler=_cmd_run)

    history = sub.add_parser("history", parents=[common], help="the latest runs")
    history.add_argument("--limit", type=int, default=20)
    history.set_defaults(handler=_cmd_history)

    show = sub.add_parser("show", parents=[common], help="a run's steps, statuses, durations and errors")
    show.add_argument("run")
    show.add_argument("--svg", metavar="FILE", help="also write the run's picture as SVG")
    show.set_defaults(handler=_cmd_show)

    approve = sub.add_parser("approve", parents=[common], help="approve (or --reject) a waiting gate")
    approve.add_argument("run")
    approve.add_argument("step")
    approve.add_argument("--reject", action="store_true")
    approve.add_argument("--comment")
    approve.add_argument("--by", help="who decides (default: the user name)")
    approve.set_defaults(handler=_cmd_approve)

    for name, text in (("cancel", "cancel a run, whichever process runs it"),
                       ("pause", "start no new step of a run until `flownb resume RUN`")):  # fmt: skip
        control = sub.add_parser(name, parents=[common], help=text)
        control.add_argument("run")
        control.set_defaults(handler=_cmd_control, command=name)

    resume = sub.add_parser(
        "resume", parents=[common], help="go on with a paused run; finish an interrupted or failed one"
    )
    resume.add_argument("run")
    resume.add_argument("--target", help="the notebook or FILE.py:NAME (default: the one the run recorded)")
    resume.add_argument("--approve", action="append", default=[], metavar="STEP|all")
    resume.set_defaults(handler=_cmd_resume)

    sql = sub.add_parser("sql", parents=[common], help="SQL over the store's tables")
    sql.add_argument("query")
    fmt = sql.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    sql.set_defaults(handler=_cmd_sql)
    _serve_parsers(sub, common)
    return p


def _serve_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser("serve", parents=[common], help="serve flows: REST API, webhooks, schedules, web page")
    serve.add_argument("targets", nargs="+", metavar="TARGET", help="NOTEBOOK.ipynb or FILE.py:FLOW (several)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8642, help="the port (default 8642; 0 takes a free one)")
    serve.add_argument("--flow", help="which flow of each notebook (default: its only or default flow)")
    serve.add_argument("--executor", help="local (default), dask, or a Dask scheduler address")
    serve.add_argument("--no-schedules", action="store_true", help="do not fire schedules in this server")
    serve.add_argument("--rate", type=float, default=10.0, help="requests a second per token (default 10)")
    serve.add_argument("--burst", type=int, default=20, help="requests at once per token (default 20)")
    serve.set_defaults(handler=_cmd_serve)

    schedule = sub.add_parser("schedule", help="cron schedules of flows (fired by flownb serve)")
    ssub = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = ssub.add_parser("add", parents=[common], help="add or replace a schedule")
    add.add_argument("flow", help="the flow's name")
    add.add_argument("cron", help="a cron expression: 5 fields, or 6 with seconds last ('*/5 * * * *')")
    add.add_argument("--tz", default="UTC", help="an IANA time zone (default UTC)")
    add.add_argument("--name", help="the schedule's name (default: the flow's)")
    add.add_argument("--param", action="append", default=[], metavar="K=V", help="a run parameter (repeatable)")
    add.add_argument("--catchup", choices=("latest", "none"), default="latest",
                     help="fires missed while nothing served: run the latest once (default), or none")  # fmt: skip
    add.set_defaults(handler=_cmd_schedule_add)
    ls = ssub.add_parser("list", parents=[common], help="the schedules, with their next fire")
    ls.add_argument("--flow", help="only this flow's")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_cmd_schedule_list)
    rm = ssub.add_parser("remove", parents=[common], help="delete a schedule")
    rm.add_argument("name")
    rm.set_defaults(handler=_cmd_schedule_remove)


# -- commands -------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from flownb.cli.progress import echo_steps, follow
    from flownb.cli.targets import load_target, parse_params

    params = parse_params(args.param)
    target = load_target(args.target, flow_name=args.flow, executor=args.executor)
    with echo_steps() as echo:
        run = target.start(params, approve=args.approve, timeout=args.timeout, in_order=args.in_order)
        return follow(run, approve=args.approve, echo=echo)


def _cmd_control(args: argparse.Namespace) -> int:
    import flownb

    run = flownb.attach(args.run)
    getattr(run, args.command)()
    done = "cancelling" if args.command == "cancel" else "pausing"
    print(f"{done} run {run.id} (its process applies it within a few seconds; flownb show {run.id} follows it)")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    import flownb
    from flownb.cli.progress import echo_steps, follow
    from flownb.cli.targets import load_target, recorded_target
    from flownb.store import open_store

    attached = flownb.attach(args.run)
    if attached.status == "paused":  # its owner goes on; nothing to load here
        attached.resume()
        print(f"resuming paused run {attached.id}")
        return 0
    store = open_store(None)
    where, flow_name = recorded_target(store, args.run)
    target = load_target(args.target or where, flow_name=flow_name, executor=None)
    with echo_steps() as echo:
        run = target.resume(args.run, approve=args.approve)
        return follow(run, approve=args.approve, echo=echo)


def _cmd_history(args: argparse.Namespace) -> int:
    import flownb

    df = flownb.history(limit=args.limit)
    _print_table(df, "no runs yet")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from flownb.cli.targets import full_run_id
    from flownb.store import open_store

    store = open_store(None)
    run_id = full_run_id(store, args.run)
    _print_table(store.runs_frame(run_id), "")
    columns = ["step", "attempt", "kind", "status", "level", "duration_ms", "error_type", "error", "reason"]
    steps = store.steps_frame(run_id)
    if not steps.empty:
        steps = steps.sort_values(["level", "step", "attempt"], na_position="first")[columns]
    _print_table(steps, "no steps recorded")
    if args.svg:
        from flownb.api import run_svg

        with open(args.svg, "w") as f:
            f.write(run_svg(store, run_id))
        print(f"wrote {args.svg}")
    return 0


def _cmd_approve(args: argparse.Namespace) -> int:
    import getpass

    from flownb.cli.targets import full_run_id
    from flownb.store import Decision, open_store
    from flownb.store.base import utcnow

    store = open_store(None)
    run_id = full_run_id(store, args.run)
    asked, decided = store.approval_state(run_id, args.step)
    if not asked:
        names = ", ".join(store.waiting_approvals(run_id)) or "none"
        raise UsageError(f"run {run_id} has no approval {args.step!r} (waiting: {names})")
    if decided is not None:
        raise UsageError(f"approval {args.step!r} of run {run_id} was already decided: {decided}")
    decision = "rejected" if args.reject else "approved"
    store.post_decision(
        Decision(run_id, args.step, decision, args.by or getpass.getuser(), args.comment, "cli", utcnow())
    )
    print(f"{decision} {args.step} of run {run_id}")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    import flownb

    df = flownb.sql(args.query)
    if args.csv:
        df.to_csv(sys.stdout, index=False)
    elif args.json:
        print(df.to_json(orient="records", date_format="iso"))
    else:
        _print_table(df, "(no rows)")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from flownb.cli.targets import load_target
    from flownb.server import make_server
    from flownb.server.flows import ServedFlow, session_starter

    if not (args.rate > 0 and args.burst >= 1):
        raise UsageError(f"--rate {args.rate:g} --burst {args.burst}: give a rate above 0 and a burst of 1 or more")
    served = []
    for where in args.targets:
        target = load_target(where, flow_name=args.flow, executor=args.executor)
        starter = session_starter(target.session, target.flow.name) if target.session is not None else None
        served.append(ServedFlow(target.flow, starter=starter, where=target.where))
    server = make_server(
        served, host=args.host, port=args.port, schedules=not args.no_schedules, rate=args.rate, burst=args.burst
    )
    names = ", ".join(server.flows.names)
    print(f"flownb serve: {names} on http://{args.host}:{args.port} (store {server.flows.store.path}); Ctrl-C stops")
    try:
        server.serve_forever()
    except OSError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _cmd_schedule_add(args: argparse.Namespace) -> int:
    from flownb.cli.targets import parse_params
    from flownb.store import open_store, schedules

    checked = schedules.validate(
        args.flow, args.cron, tz=args.tz, params=parse_params(args.param), name=args.name, catchup=args.catchup
    )
    s = schedules.define(open_store(None), checked)
    print(f"schedule {s.name}: flow {s.flow}, {s.cron!r} in {s.tz}; next fire {_next_fire(s)}")
    return 0


def _cmd_schedule_list(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from flownb.store import open_store, schedules

    found = schedules.all_schedules(open_store(None), flow=args.flow)
    if args.json:
        print(json.dumps([{**s.to_json(), "next_fire": _next_fire(s)} for s in found]))
        return 0
    rows = [
        {"name": s.name, "flow": s.flow, "cron": s.cron, "tz": s.tz, "catchup": s.catchup,
         "params": json.dumps(s.params) if s.params else "", "next_fire": _next_fire(s),
         "last_run": s.last_run_id or ""}
        for s in found
    ]  # fmt: skip
    _print_table(pd.DataFrame(rows), "no schedules; add one with flownb schedule add FLOW CRON")
    return 0


def _cmd_schedule_remove(args: argparse.Namespace) -> int:
    from flownb.store import open_store, schedules

    if not schedules.remove(open_store(None), args.name):
        raise UsageError(f"no schedule {args.name!r}; see flownb schedule list")
    print(f"removed schedule {args.name}")
    return 0


def _next_fire(s: Any) -> str:
    from datetime import UTC, datetime

    return str(s.next_fire(max(datetime.now(UTC), s.last_fire or s.created_at)).isoformat())


def _print_table(df: Any, empty: str) -> None:
    from rich.console import Console
    from rich.table import Table

    if df.empty:
        if empty:
            print(empty)
        return
    table = Table(show_lines=False)
    for col in df.columns:
        table.add_column(str(col))
    for row in df.itertuples(index=False):
        table.add_row(*("" if _missing(v) else str(v) for v in row))
    Console(width=max(120, Console().width)).print(table)


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)  # noqa: PLR0124  (NaN is the value unequal to itself)
    except (TypeError, ValueError):
        return False
