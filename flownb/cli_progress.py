"""Live progress of a run in the terminal, and the summary table at its end."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import pandas as pd
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from flownb.engine.run import Run
from flownb.errors import FlownbError

COLORS = {
    "pending": "grey50", "running": "cyan", "retrying": "yellow", "waiting": "magenta",
    "succeeded": "green", "cached": "green", "failed": "red", "skipped": "grey50", "cancelled": "red",
}  # fmt: skip
DONE = ("succeeded", "cached", "failed", "skipped", "cancelled")


def follow(run: Run, *, approve: Iterable[str] = ()) -> int:
    """Show the run until it ends; tell how to decide a waiting gate; 0 only on success."""
    console = Console(stderr=False)
    told: set[str] = set()
    auto = set(approve)
    if console.is_terminal:
        with Live(_table(run), console=console, refresh_per_second=8, transient=True) as live:
            while not run.done:
                _tell_gates(run, told, auto, live.console)
                live.update(_table(run))
                time.sleep(0.12)
    else:
        seen: dict[str, str] = {}
        while not run.done:
            _tell_gates(run, told, auto, console)
            for step, status in run.step_status.items():
                if seen.get(step) != status and status in (*DONE, "running", "waiting"):
                    seen[step] = status
                    console.print(f"  {step}: {status}", highlight=False)
            time.sleep(0.12)
    run.wait()
    console.print(_table(run, final=True))
    if run.status == "succeeded":
        console.print(f"run {run.id} [green]succeeded[/green]")
        return 0
    console.print(f"run {run.id} [red]{run.status}[/red]: {run.error}")
    console.print(f"resume it with: flownb resume {run.id}", highlight=False)
    return 1


def _tell_gates(run: Run, told: set[str], auto: set[str], console: Console) -> None:
    for step in run.pending_approvals:
        if step in told:
            continue
        if "all" in auto or step in auto:
            told.add(step)
            try:
                run.approve(step, comment="approved at start (--approve)", via="cli")
                console.print(f"approved {step!r} (--approve)", highlight=False)
            except FlownbError:
                pass  # decided meanwhile by someone else
            continue
        told.add(step)
        console.print(
            f"[magenta]waiting for approval[/magenta] of {step!r} in run {run.id}; from another terminal:\n"
            f"  flownb approve {run.id} {step}            (or --reject, --comment TEXT)",
            highlight=False,
        )
        sys.stdout.flush()


def _table(run: Run, *, final: bool = False) -> Table:
    ex = run.execution
    title = f"{run.flow} · run {run.id} · {run.status}"
    table = Table(title=title, title_justify="left")
    for col in ("step", "level", "status", "attempts", "seconds", "error"):
        table.add_column(col, overflow="fold")
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    if final:  # the recorded attempts: durations and the last error of each step
        for row in run.steps.to_dict("records"):
            name = str(row["step"])
            ms = row["duration_ms"]
            seconds[name] = seconds.get(name, 0.0) + (0.0 if pd.isna(ms) else float(ms) / 1000)
            if isinstance(row["error"], str) and row["status"] != "succeeded":
                errors[name] = row["error"]
    order = sorted(ex.step_status, key=lambda s: (ex.graph.levels.get(s, 0), list(ex.step_status).index(s)))
    done = 0
    for step in order:
        status = ex.step_status[step]
        done += status in DONE
        table.add_row(
            step, str(ex.graph.levels.get(step, "")), Text(status, style=COLORS.get(status, "")),
            str(ex.attempts.get(step, 0)), f"{seconds[step]:.2f}" if step in seconds else "",
            errors.get(step, "")[:80] if status != "succeeded" else "",
        )  # fmt: skip
    if not final:
        table.caption = f"{done}/{len(ex.step_status)} steps done"
    return table
