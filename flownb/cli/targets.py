"""What ``flownb run`` runs: a notebook's ``%%step`` cells, or a Flow in a Python file."""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flownb.api import Flow
from flownb.engine.run import Run
from flownb.engine.runtime import runtime
from flownb.errors import FlownbError
from flownb.store.base import Store


class TargetError(FlownbError):
    """The notebook or file to run cannot be used; the message says why."""


def parse_params(pairs: Iterable[str]) -> dict[str, Any]:
    """``k=v`` pairs; values typed as int, float, bool or JSON when they parse, else strings."""
    from flownb.notebook.args import typed  # the same typing as %flow run --param

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise TargetError(f"--param {pair!r} is not of the form key=value")
        params[key.strip()] = typed(raw)
    return params


@dataclass
class Target:
    """A loaded notebook session or Python flow, ready to start or resume."""

    where: str
    flow: Flow
    session: Any = None

    def start(
        self, params: Mapping[str, Any], *, approve: Iterable[str], timeout: float | None, in_order: bool = False
    ) -> Run:
        if self.session is not None:
            run = self.session.start(
                self.flow.name, params=dict(params), timeout=timeout, in_order=in_order, trigger="cli"
            )
            return run  # type: ignore[no-any-return]
        if in_order:
            self.flow.in_order = True
        return self.flow.run(dict(params), timeout=timeout, trigger="cli")

    def resume(self, run_id: str, *, approve: Iterable[str]) -> Run:
        if self.session is not None:
            return self.session.resume(run_id, flow=self.flow.name)  # type: ignore[no-any-return]
        return self.flow.resume(run_id)


def load_target(target: str, *, flow_name: str | None, executor: str | None) -> Target:
    rt = runtime()
    if target.endswith(".ipynb"):
        path = Path(target)
        if not path.is_file():
            raise TargetError(f"no notebook {target}")
        from flownb.notebook.nbfile import read_notebook

        read_notebook(path)  # a broken file is one line here, before any cell executes
        rt.notebook = str(path.resolve())
        return _notebook(path, flow_name, executor)
    file, sep, name = target.partition(":")
    if not sep or not file.endswith(".py"):
        raise TargetError(f"{target!r} is neither NOTEBOOK.ipynb nor FILE.py:FLOW")
    if not Path(file).is_file():
        raise TargetError(f"no file {file}")
    rt.notebook = f"{Path(file).resolve()}:{name}"
    try:
        namespace = runpy.run_path(file, run_name="__flownb__")
    except FlownbError:
        raise
    except SystemExit as exc:  # the file is a script, not a module: its exit must not become ours
        raise TargetError(
            f"{file} called sys.exit({exc.code!r}) while loading; a FILE.py:FLOW file must define its "
            "flow without exiting (put script code under `if __name__ == '__main__':`)"
        ) from None
    except Exception as exc:  # noqa: BLE001  (the user's file failed: say where, briefly)
        raise TargetError(f"{file} failed to load: {type(exc).__name__}: {exc}") from None
    flow = namespace.get(name)
    if not isinstance(flow, Flow):
        raise TargetError(f"{file} defines no Flow named {name!r}")
    if executor:
        flow.executor = executor
    return Target(target, flow)


def _notebook(path: Path, flow_name: str | None, executor: str | None) -> Target:
    from flownb.notebook.headless import headless_shell
    from flownb.notebook.session import Session

    # the kernel in JupyterLab names the default flow after the notebook: do the same
    os.environ["JPY_SESSION_NAME"] = str(path.resolve())
    shell = headless_shell()
    # IPython prints a failing cell's error itself; the one line we raise says it all
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        session = Session.load(shell, live=False)
        session.execute_notebook(path)
    sys.stdout.write(out.getvalue())  # what the set-up cells printed on purpose
    names = [n for n, f in session.flows.items() if f.steps]
    if not names:
        raise TargetError(f"{path} defines no steps (no %%step cells or @flow.step functions)")
    name = flow_name or (names[0] if len(names) == 1 else session.default_flow)
    if name not in session.flows:
        raise TargetError(f"{path} has no flow {name!r}; it has {', '.join(names)}")
    flow = session.flow(name, executor=executor) if executor else session.flows[name]
    return Target(str(path), flow, session)


def recorded_target(store: Store, run_id: str) -> tuple[str, str]:
    """Where a run's flow was defined (the notebook or FILE.py:NAME), and its name."""
    full = full_run_id(store, run_id)
    row = store.run_row(full) or {}
    where = row.get("notebook")
    if not isinstance(where, str) or not where:
        raise TargetError(f"run {full} recorded no notebook or file; pass --target NOTEBOOK.ipynb or FILE.py:FLOW")
    return where, str(row.get("flow"))


def full_run_id(store: Store, run_id: str) -> str:
    """The one run ``run_id`` names (a prefix will do); ``RunNotFound`` is the CLI's one line, exit 2."""
    return store.resolve_run_id(run_id)
