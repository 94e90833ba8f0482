"""``get_ipython()`` inside a running step: the shell, with the step's globals as its namespace.

IPython's input transformers turn ``%timeit f(x)`` into
``get_ipython().run_line_magic('timeit', 'f(x)')`` and ``!ls {path}`` into
``get_ipython().system('ls {path}')``. A magic reads and writes
``shell.user_ns``; inside a step that must be the step's own globals (its
inputs live there, not in the notebook), and the call must not disturb the
notebook, which may be running another cell at the same time. So each magic
runs on a copy of its ``Magics`` object whose ``shell`` is this proxy, and
shell commands run here with their output captured into the step's log.
"""

from __future__ import annotations

import copy
import os
import subprocess
import threading
import types
from collections.abc import Callable
from typing import Any

# IPython (9.18+) imports its own magics lazily, on first lookup, and defining a
# Magics class fills a table shared by the whole module: two steps importing two
# magics modules at once mix their tables ("'PylabMagics' object has no attribute
# 'prun'"). So lookups from steps take turns, and the first one imports them all.
_MAGIC_LOOKUP = threading.Lock()


def preload_magics(shell: Any) -> None:
    """Import every magic IPython declares lazily, so steps running at once never race to."""
    with _MAGIC_LOOKUP:
        manager = getattr(shell, "magics_manager", None)
        load_all = getattr(manager, "load_all_lazy_magics", None)
        if load_all is not None:
            load_all()


def _find_magic(shell: Any, kind: str, name: str) -> Any:
    with _MAGIC_LOOKUP:
        return shell.find_line_magic(name) if kind == "line" else shell.find_cell_magic(name)


class StepShell:
    """Stands in for the shell inside one step; everything it does not override goes to the shell."""

    def __init__(self, shell: Any, namespace: dict[str, Any]) -> None:
        object.__setattr__(self, "_shell", shell)
        object.__setattr__(self, "user_ns", namespace)

    @property
    def user_global_ns(self) -> dict[str, Any]:
        return self.user_ns  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_shell"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "user_ns":
            object.__setattr__(self, name, value)
        else:
            setattr(self._shell, name, value)

    # -- magics -------------------------------------------------------------------------------

    def run_line_magic(self, magic_name: str, line: str, _stack_depth: int = 1) -> Any:
        fn = _find_magic(self._shell, "line", magic_name)
        if fn is None:
            return self._shell.run_line_magic(magic_name, line)  # raises the shell's own UsageError
        kwargs = {"local_ns": self.user_ns} if getattr(fn, "needs_local_scope", False) else {}
        return self._rebound(fn)(self.var_expand(line), **kwargs)

    def run_cell_magic(self, magic_name: str, line: str, cell: str) -> Any:
        fn = _find_magic(self._shell, "cell", magic_name)
        if fn is None:
            return self._shell.run_cell_magic(magic_name, line, cell)
        kwargs = {"local_ns": self.user_ns} if getattr(fn, "needs_local_scope", False) else {}
        return self._rebound(fn)(self.var_expand(line), cell, **kwargs)

    def _rebound(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The magic, on a copy of its Magics object that sees this proxy as its shell."""
        owner = getattr(fn, "__self__", None)
        func = getattr(fn, "__func__", None)
        if owner is None or func is None or not hasattr(owner, "shell"):
            return fn
        clone = copy.copy(owner)
        clone.shell = self
        return types.MethodType(func, clone)

    def var_expand(self, cmd: str, depth: int = 0, formatter: Any = None) -> str:
        """``$name`` and ``{expression}`` from the step's globals, as IPython expands them."""
        from IPython.utils.text import DollarFormatter

        try:
            return str((formatter or DollarFormatter()).vformat(cmd, args=[], kwargs=self.user_ns))
        except Exception:  # noqa: BLE001  (IPython leaves a command it cannot expand as written)
            return cmd

    # -- shell commands ---------------------------------------------------------------------------

    def system(self, cmd: str) -> None:
        """``!cmd``: run it; what it prints goes to the step's log; ``_exit_code`` as IPython sets it."""
        done = self._run(cmd)
        if done.stdout:
            print(done.stdout, end="" if done.stdout.endswith("\n") else "\n")
        if done.stderr:
            import sys

            print(done.stderr, end="" if done.stderr.endswith("\n") else "\n", file=sys.stderr)
        self.user_ns["_exit_code"] = done.returncode

    system_piped = system
    system_raw = system

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> Any:
        """``x = !cmd``: its output lines, as IPython's SList."""
        from IPython.utils.text import SList

        out = self._run(cmd).stdout
        return SList(out.splitlines()) if split else out

    def _run(self, cmd: str) -> subprocess.CompletedProcess[str]:
        expanded = self.var_expand(cmd)
        # the user's own command line, as `!` runs it in a notebook
        return subprocess.run(  # noqa: S602
            expanded, shell=True, capture_output=True, text=True, errors="replace", check=False,
            executable=os.environ.get("SHELL") or None,
        )  # fmt: skip
