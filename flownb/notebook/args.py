"""Argument parsing for the magics: ``--help`` everywhere, one-line usage errors.

A bad option raises IPython's ``UsageError``, which the notebook shows as one
line, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Sequence
from typing import Any, NoReturn

from IPython.core.error import UsageError


class HelpShown(Exception):
    """``--help`` was printed; the magic has nothing else to do."""


class Parser(argparse.ArgumentParser):
    def __init__(self, prog: str, description: str = "", **kwargs: Any) -> None:
        super().__init__(prog=prog, description=description, add_help=True, exit_on_error=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # fmt: skip

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().strip()}  (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message)
        raise HelpShown

    def parse(self, line: str | Sequence[str]) -> argparse.Namespace:
        try:
            argv = shlex.split(line) if isinstance(line, str) else list(line)
        except ValueError as exc:
            raise UsageError(f"{self.prog}: cannot split the line: {exc}") from None
        try:
            return self.parse_args(argv)
        except argparse.ArgumentError as exc:
            self.error(str(exc))


def typed(text: str) -> Any:
    """``--param`` values: int, float, bool or JSON when they parse, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text[:1] in "[{\"" or low == "null":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def key_values(pairs: Sequence[str] | None, what: str = "--param") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} takes key=value, not {pair!r}")
        out[key.strip()] = typed(value)
    return out


def names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text}")
    return value


def step_parser(prog: str) -> Parser:
    """The options of ``%%step`` and ``%step`` (DESIGN §2)."""
    p = Parser(prog, description=STEP_HELP)
    p.add_argument("name", help="the step's name (an identifier)")
    p.add_argument("--after", help="comma-separated steps this one waits for, besides the names it reads")
    p.add_argument("--retries", type=positive_int, default=0)
    p.add_argument("--backoff", choices=("constant", "linear", "exponential"), default="exponential")
    p.add_argument("--retry-delay", type=float, default=1.0, metavar="S")
    p.add_argument("--max-delay", type=float, default=60.0, metavar="S")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds per attempt")
    p.add_argument("--when", metavar="EXPR", help="skip the step (and its dependents) unless EXPR holds")
    p.add_argument("--foreach", metavar="EXPR", help="one attempt per item; item and index name the element")
    p.add_argument("--concurrency", type=int, metavar="N")
    p.add_argument("--repeat-until", metavar="EXPR")
    p.add_argument("--max-iterations", type=int, default=100, metavar="N")
    p.add_argument("--on-failure", choices=("stop", "continue"), default="stop")
    p.add_argument("--fallback", metavar="STEP")
    p.add_argument("--cache", action="store_true", help="reuse an earlier output for the same inputs and code")
    p.add_argument("--trigger-rule", choices=("all_succeeded", "none_failed", "all_done", "one_succeeded"),
                   default="all_succeeded", help="when it runs, given how its upstream steps ended")  # fmt: skip
    p.add_argument("--max-failures", type=_count_or_fraction, default=0, metavar="N",
                   help="foreach: how many items may fail (a count, or a fraction below 1)")  # fmt: skip
    p.add_argument("--kind", default="python", help="python (default), shell, http, agent, wasm, approval, subflow")
    p.add_argument("--flow", metavar="F", help="the flow to add the step to (default: the notebook's)")
    kind = p.add_argument_group("kind options (for --kind other than python)")
    for opt in ("message", "command", "url", "method", "prompt", "model", "system", "module", "cwd"):
        kind.add_argument(f"--{opt}")
    kind.add_argument("--input", help="JSON given to a wasm module on stdin")
    kind.add_argument("--approval-timeout", type=float, metavar="S")
    kind.add_argument("--subflow", metavar="F", help="the flow a subflow step runs")
    kind.add_argument("--option", action="append", metavar="K=V", help="any other kind option (typed like --param)")
    return p


STEP_HELP = """\
Register the cell as a step of the notebook's flow; it does not run it.
Cells keep their notebook order: a name a cell reads comes from the nearest
earlier cell that writes it (assigns, imports, defines, changes in place).
Cells that share hidden state (pyplot, a seeded RNG, a file) run in order.
Run the flow with %flow run (--in-order to run every cell after the one above).

examples:
  %%step users --retries 3 --timeout 30
  users = pd.read_csv(params["source"])

  %step publish_ok --kind approval --message "Publish {{ joined | length }} rows?"
"""

FLOW_HELP = """\
%flow run [--wait] [--in-order] [--param k=v ...] [--flow F] [--executor E] [--approve STEP|all]
%flow show | steps | reset                     [--flow F]
%flow status [RUN] | watch RUN | cancel [RUN] | pause [RUN] | resume [RUN]
%flow approve RUN STEP [--reject] [--comment C]
%flow history [--limit N]
%flow serve [--host H] [--port P] [--stop]     serve the flows: REST API, webhooks, schedules, web page
%flow schedule [CRON] [--tz TZ] [--param k=v ...] [--name N] [--catchup latest|none] [--remove NAME]
"""


def flow_parser() -> Parser:
    p = Parser("%flow", description="Run and inspect the notebook's flows.\n\n" + FLOW_HELP)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    run = sub.add_parser("run", help="start a run; returns at once unless --wait")
    run.add_argument("--wait", action="store_true", help="block until the run ends (headless notebooks)")
    run.add_argument("--param", action="append", metavar="K=V", help="a run parameter (typed)")
    run.add_argument("--approve", action="append", metavar="STEP", help="decide these approvals at once ('all')")
    run.add_argument("--executor", metavar="E", help='"local", "dask" or a scheduler address')
    run.add_argument("--timeout", type=float, metavar="S", help="seconds for the whole run")
    run.add_argument(
        "--in-order", action="store_true",
        help="run every step cell after the one above it (for hidden state no analysis can see)",
    )  # fmt: skip
    for name, text in (("show", "draw the flow"), ("steps", "list the defined steps"),
                       ("reset", "forget the flow's steps")):  # fmt: skip
        sub.add_parser(name, help=text)
    for name, text in (("status", "a run's status (default: the last run)"),
                       ("cancel", "cancel a run, whichever process runs it (default: the last run)"),
                       ("pause", "start no new step of a run until %%flow resume (default: the last run)"),
                       ("resume", "go on with a paused run; finish an interrupted or failed one (default: "
                                  "the flow's last)")):  # fmt: skip
        sp = sub.add_parser(name, help=text)
        sp.add_argument("run", nargs="?")
    watch = sub.add_parser("watch", help="the live view of any run, running or finished")
    watch.add_argument("run")
    approve = sub.add_parser("approve", help="approve (or --reject) a waiting step")
    approve.add_argument("run")
    approve.add_argument("step")
    approve.add_argument("--reject", action="store_true")
    approve.add_argument("--comment")
    history = sub.add_parser("history", help="the latest runs")
    history.add_argument("--limit", type=int, default=20)
    _serve_parsers(sub)
    for sp in sub.choices.values():
        sp.add_argument("--flow", metavar="F", help="the flow (default: the notebook's)")
    for choice in sub._choices_actions:  # `%flow run --help` and `%flow?` say what the command does
        sub.choices[choice.dest].description = choice.help
    return p


def sql_parser(prog: str) -> Parser:
    p = Parser(prog, usage="%(prog)s [--param NAME] [--db PATH] [VAR <<] QUERY", description=(
        "SQL over the store (runs, steps, events, approvals, outputs), answered as a DataFrame.\n"
        "Notebook values reach the query only as parameters: --param name binds $name\n"
        "to the notebook variable `name` (DuckDB binds it; nothing is pasted into the text).\n"
        "VAR << assigns the DataFrame to the notebook variable VAR instead of showing it.\n\n"
        "examples:\n  %%flowsql --param flow_name\n  SELECT * FROM runs WHERE flow = $flow_name\n\n"
        "  %flowsql failed << SELECT * FROM steps WHERE status = 'failed'"
    ))  # fmt: skip
    p.add_argument("--param", action="append", metavar="NAME", help="bind $NAME to the notebook variable NAME")
    p.add_argument("--db", metavar="PATH", help="another store file (default: the process's store)")
    return p


_SQL_LINE = re.compile(r"^\s*((?:(?:--param|--db)(?:\s+|=)\S+\s*|(?:--help|-h)\s*)*)(.*)$", re.S)
_SQL_UNKNOWN = re.compile(r"^(--?[A-Za-z][\w-]*)")
_SQL_CAPTURE = re.compile(r"^([A-Za-z_]\w*)\s*<<(.*)$", re.S)


def split_sql_line(line: str, prog: str = "%flowsql") -> tuple[str, str | None, str]:
    """``%flowsql [--param N] [--db P] [VAR <<] QUERY``: the options, the variable to assign, the query.

    The query is left as written (no shell quoting). An option this magic does not
    know is refused in one line rather than taken for SQL (a SQL comment, ``-- ...``,
    has a space after its dashes).
    """
    m = _SQL_LINE.match(line)
    assert m is not None  # the pattern matches any text
    options, rest = m.group(1), m.group(2).strip()
    unknown = _SQL_UNKNOWN.match(rest)
    if unknown is not None:
        raise UsageError(
            f"{prog}: unknown option {unknown.group(1)}; it takes --param NAME, --db PATH and "
            f"VAR << before the query (see {prog} --help)"
        )
    capture = _SQL_CAPTURE.match(rest)
    if capture is None:
        return options, None, rest
    return options, capture.group(1), capture.group(2).strip()


def flow_usage() -> str:
    """The whole usage of ``%flow``, every command with its options (what ``%flow?`` shows)."""
    parser = flow_parser()
    parts = [parser.format_help().rstrip(), LIVE_VIEW_HELP.rstrip()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parts.extend(sub.format_help().rstrip() for sub in action.choices.values())
    return "\n\n".join(parts) + "\n"


LIVE_VIEW_HELP = """\
the live view:
  `%flow run` (and `view = %flow run`) shows the run's live view at once and returns;
  the kernel stays free. The graph fits the output's width: zoom with its buttons or
  Ctrl/Cmd+wheel, drag to pan, click a step to open its panel (prints, displays,
  figures, and a failure's traceback). `--wait` blocks until the run ends and then
  adds the final picture and summary as static HTML (what nbconvert, GitHub and
  nbviewer show). `view.run` is the flownb.Run; `view.wait()` waits for it."""


def _count_or_fraction(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _serve_parsers(sub: Any) -> None:
    """``%flow serve`` and ``%flow schedule`` (flownb/server; the same options as ``flownb serve``)."""
    serve = sub.add_parser("serve", help="serve the flows in the background: REST API, webhooks, schedules, web page")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8642, help="the port (default 8642; 0 takes a free one)")
    serve.add_argument("--stop", action="store_true", help="stop the server this kernel runs")
    schedule = sub.add_parser("schedule", help="run the flow on a cron schedule (no CRON: list its schedules)")
    schedule.add_argument("cron", nargs="?", help="a cron expression, quoted: '*/5 * * * *' (6 fields: seconds last)")
    schedule.add_argument("--tz", default="UTC", help="an IANA time zone (default UTC)")
    schedule.add_argument("--param", action="append", metavar="K=V", help="a run parameter (typed)")
    schedule.add_argument("--name", help="the schedule's name (default: the flow's)")
    schedule.add_argument("--catchup", choices=("latest", "none"), default="latest",
                          help="fires missed while nothing served: run the latest once, or none")  # fmt: skip
    schedule.add_argument("--remove", metavar="NAME", help="delete the schedule NAME")
