"""Live progress of a run in the terminal, what its steps print, and the summary table at its end."""

from __future__ import annotations

import contextlib
import queue
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from flownb.engine.observe import Observer
from flownb.engine.run import Run
from flownb.errors import FlownbError

COLORS = {
    "pending": "grey50", "running": "cyan", "retrying": "yellow", "waiting": "magenta",
    "succeeded": "green", "cached": "green", "failed": "red", "skipped": "grey50", "cancelled": "red",
}  # fmt: skip
DONE = ("succeeded", "cached", "failed", "skipped", "cancelled")


class StepEcho(Observer):
    """What the steps of the runs this process starts print and display, as prefixed lines.

    Steps write from worker threads; lines queue here and the terminal prints
    them from one thread, in the order they were written: ``[step] text``.
    A partial line waits for its end (or for the run's end).
    """

    def __init__(self) -> None:
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._partial: dict[tuple[str, str], str] = {}

    def attach(self, run: Run) -> None:
        """The runtime's start hook: listen to a top-level run's steps."""
        if run.parent_run_id is None:
            run.observe(self, replay=False)

    def on_log(self, step: str, attempt: int, stream: str, text: Any) -> None:
        if stream == "display":
            for line in _display_lines(text):
                self.lines.put(f"[{step}] {line}")
            return
        pending = self._partial.pop((step, stream), "") + str(text)
        *complete, rest = pending.split("\n")
        for line in complete:
            self.lines.put(f"[{step}] {line}")
        if rest:
            self._partial[(step, stream)] = rest

    def drain(self) -> Iterator[str]:
        while True:
            try:
                yield self.lines.get_nowait()
            except queue.Empty:
                return

    def close(self) -> Iterator[str]:
        yield from self.drain()
        for (step, _), rest in sorted(self._partial.items()):
            yield f"[{step}] {rest}"
        self._partial.clear()


def _display_lines(bundle: Any) -> list[str]:
    """A displayed value as the terminal can show it: its text, and what else there was."""
    data = bundle.get("data", {}) if isinstance(bundle, dict) else {}
    text = str(data.get("text/plain", "")).rstrip("\n")
    others = [f"{mime}, {len(str(v)) * 3 // 4 // 1024} kB" if mime.startswith("image/") else mime
              for mime, v in data.items() if mime != "text/plain"]  # fmt: skip
    lines = text.split("\n") if text else []
    if others and lines:
        lines[-1] += f"  ({'; '.join(others)})"
    elif others:
        lines = [f"({'; '.join(others)})"]
    return lines


@contextlib.contextmanager
def echo_steps() -> Iterator[StepEcho]:
    """Listen to the steps of the runs started inside this block."""
    from flownb.engine.runtime import runtime

    echo = StepEcho()
    stop = runtime().watch_starts(echo.attach)
    try:
        yield echo
    finally:
        stop()


def follow(run: Run, *, approve: Iterable[str] = (), echo: StepEcho | None = None) -> int:
    """Show the run until it ends, with what its steps print; tell how to decide a waiting
    gate; 0 only on success."""
    console = Console(stderr=False)
    told: set[str] = set()
    auto = set(approve)

    def say(lines: Iterable[str], out: Console) -> None:
        for line in lines:
            out.print(Text(line), highlight=False, markup=False, soft_wrap=True)

    if console.is_terminal:
        with Live(_table(run), console=console, refresh_per_second=8, transient=True,
                  redirect_stdout=False, redirect_stderr=False) as live:  # fmt: skip
            while not run.done:
                _tell_gates(run, told, auto, live.console)
                if echo is not None:
                    say(echo.drain(), live.console)
                live.update(_table(run))
                time.sleep(0.12)
    else:
        seen: dict[str, str] = {}
        while not run.done:
            _tell_gates(run, told, auto, console)
            if echo is not None:
                say(echo.drain(), console)
            for step, status in run.step_status.items():
                if seen.get(step) != status and status in (*DONE, "running", "waiting"):
                    seen[step] = status
                    console.print(f"  {step}: {status}", highlight=False)
            time.sleep(0.12)
    run.wait()
    if echo is not None:
        say(echo.close(), console)
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
    status = run.step_status
    levels = run.levels
    attempts = run.attempts
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
    place = {name: i for i, name in enumerate(status)}
    order = sorted(status, key=lambda s: (levels.get(s, 0), place[s]))
    done = 0
    for step in order:
        st = status[step]
        done += st in DONE
        table.add_row(
            step, str(levels.get(step, "")), Text(st, style=COLORS.get(st, "")),
            str(attempts.get(step, 0)), f"{seconds[step]:.2f}" if step in seconds else "",
            errors.get(step, "")[:80] if st != "succeeded" else "",
        )  # fmt: skip
    if not final:
        table.caption = f"{done}/{len(status)} steps done"
    return table
