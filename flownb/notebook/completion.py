"""Tab completion for the magics: ``%flow`` commands and options, step names, run ids.

A matcher (IPython's completer API v2) reads the line up to the cursor and
answers the candidates that start with the word being typed. Everything here reads what the kernel already knows (its
flows, their cells, the runs it started or watched) plus, for run ids of
earlier sessions, the store's latest runs, read on a thread of its own and
cached so that a busy store never makes the Tab key hang.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flownb.notebook.args import flow_parser, step_parser

if TYPE_CHECKING:
    from flownb.notebook.session import Session

RUN_COMMANDS = ("watch", "status", "cancel", "resume", "approve")
STORE_WAIT = 0.3  # seconds a completion waits for the store's run ids before answering without them
STORE_TTL = 10.0

log = logging.getLogger("flownb")


class Completer:
    """The completers of one session's magics."""

    def __init__(self, session: Session) -> None:
        self.session = session
        parser = flow_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        self.commands: list[str] = list(sub.choices)
        self.options = {name: _options(p) for name, p in sub.choices.items()}
        self.step_options = _options(step_parser("%%step"))
        self._store_ids: list[str] = []
        self._store_at = 0.0
        self._store_thread: threading.Thread | None = None

    def install(self, shell: Any) -> None:
        """Add a matcher (IPython's completer API v2) that answers on the magics' lines only.

        When it has candidates it suppresses the other matchers (Jedi's keywords are noise
        after ``%flow run --approve``); elsewhere it answers nothing and suppresses nothing.
        """
        from IPython.core.completer import SimpleCompletion, completion_matcher

        @completion_matcher(api_version=2, identifier="flownb_magics")  # type: ignore[untyped-decorator]
        def matcher(context: Any) -> dict[str, Any]:
            line = context.text_until_cursor
            first = line.split(None, 1)[0] if line.strip() else ""
            answer = {"%flow": self.flow, "%step": self.step, "%%step": self.step}.get(first)
            still_first = not any(c.isspace() for c in line.lstrip())  # typing the magic's own name
            words = answer(line) if answer is not None and not still_first else []
            found = [w for w in words if w.startswith(context.token)]
            return {"completions": [SimpleCompletion(w, type="flownb") for w in found],
                    "suppress": bool(found), "ordered": True}  # fmt: skip

        shell.Completer.custom_matchers.append(matcher)

    # -- %flow ------------------------------------------------------------------------------------

    def flow(self, line: str) -> list[str]:
        words, current = _words(line)
        args = words[1:]
        if not args or args[0] not in self.options:
            return self.commands
        command, previous = args[0], args[-1]
        flow = _option_value(args, "--flow")
        values: dict[str, Callable[[], list[str]]] = {
            "--flow": self.flows,
            "--approve": lambda: ["all", *self.steps(flow, kinds=("approval",))],
            "--executor": lambda: ["local", "dask"],
        }
        if previous in values:
            return values[previous]()
        if current.startswith("-"):
            return self.options[command]
        positional = _positional(args[1:], self.options[command])
        if command in RUN_COMMANDS and not positional:
            return self.run_ids()
        if command == "approve" and len(positional) == 1:
            return self.steps(flow, kinds=("approval",)) or self.steps(flow)
        return []

    # -- %%step / %step ----------------------------------------------------------------------------

    def step(self, line: str) -> list[str]:
        words, current = _words(line)
        args = words[1:]
        previous = args[-1] if args else ""
        flow = _option_value(args, "--flow")
        if previous in ("--after", "--fallback"):
            return self.steps(flow)
        if previous == "--flow":
            return self.flows()
        if previous == "--kind":
            return ["python", "shell", "http", "agent", "wasm", "approval", "subflow"]
        if current.startswith("-") or args:
            return self.step_options
        return self.steps(flow)  # the step's name: redefine one

    # -- what the kernel knows ---------------------------------------------------------------------

    def flows(self) -> list[str]:
        return sorted(self.session.flows) or [self.session.default_flow]

    def steps(self, flow: str | None = None, *, kinds: tuple[str, ...] = ()) -> list[str]:
        s = self.session
        name = flow or s.default_flow
        if name not in s.flows:
            return []
        specs = s.flows[name].steps
        names = list(dict.fromkeys([*s.cells[name].ordered(), *specs]))
        if kinds:
            names = [n for n in names if n in specs and specs[n].kind in kinds]
        return names

    def run_ids(self) -> list[str]:
        """Run ids, newest first: this kernel's runs, then the store's latest."""
        s = self.session
        known = list(reversed(s.runs)) + [r for r in reversed(s.tracker.states) if r not in s.runs]
        return list(dict.fromkeys([*known, *self._stored_ids()]))

    def _stored_ids(self) -> list[str]:
        if time.monotonic() - self._store_at > STORE_TTL and (
            self._store_thread is None or not self._store_thread.is_alive()
        ):
            self._store_thread = threading.Thread(target=self._read_store, name="flownb-complete", daemon=True)
            self._store_thread.start()
            self._store_thread.join(STORE_WAIT)
        return self._store_ids

    def _read_store(self) -> None:
        import flownb

        try:
            df = flownb.history(self.session.flow().db, limit=20)
            self._store_ids = [str(r) for r in df["run_id"]]
        except Exception:  # completion offers what it has; the log says why the store did not answer
            log.debug("flownb: run ids for completion could not be read", exc_info=True)
        self._store_at = time.monotonic()


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for o in parser._option_string_actions if o.startswith("--"))


def _words(text: str) -> tuple[list[str], str]:
    """The words before the one being typed, and that word ('' after a space)."""
    words = text.split()
    if not text or text[-1].isspace():
        return words, ""
    return words[:-1], words[-1]


def _option_value(args: list[str], option: str) -> str | None:
    for i, word in enumerate(args[:-1]):
        if word == option:
            return args[i + 1]
    return None


def _positional(args: list[str], options: list[str]) -> list[str]:
    """The positional words (an option's value is not one; flags take none)."""
    flags = {"--wait", "--in-order", "--reject", "--help"}
    out: list[str] = []
    skip = False
    for word in args:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in options and word not in flags
        else:
            out.append(word)
    return out

