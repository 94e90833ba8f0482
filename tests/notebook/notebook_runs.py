"""Run a notebook three ways and compare the final values of its names (DESIGN §3a, "The measure").

- :func:`run_sequential`: the notebook top to bottom with nbclient in a fresh kernel,
  the reference;
- :func:`run_flownb_cli`: :func:`convert`-ed (every code cell a ``%%step``) and run by
  ``flownb run NB --db s.duckdb`` in a subprocess;
- :func:`run_flownb_kernel`: converted, in a fresh kernel, between ``%load_ext flownb``
  and ``%flow run --wait``.

Each run happens in a working directory of its own, holding a copy of the notebook and
of the ``data/`` folder beside it. After the run, the process that owns the namespace
fingerprints every user name with ``tests/notebooks/collect.py`` (the same file in the
three cases) and pickles the fingerprints to a file the harness reads back;
:func:`compare` lists the differences in words. Nothing here imports flownb's cell
layer: the converted notebook goes through flownb's public entry points only, and
:func:`run_summary` reads the store's public tables.
"""

from __future__ import annotations

import asyncio
import copy
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CORPUS = NOTEBOOKS / "corpus"
CASES = NOTEBOOKS / "cases"
COLLECT = NOTEBOOKS / "collect.py"
CELL_TIMEOUT = 90  # a corpus notebook runs in seconds; this only turns a hang into a failure
RUN_TIMEOUT = 180
STORE = "s.duckdb"
VALUES = ".values.pkl"

Fingerprint = tuple[Any, ...]


class NotebookFailed(AssertionError):
    """The notebook raised when run top to bottom: it is not a valid reference."""


class Values(dict[str, Fingerprint]):
    """The final values of one run (name -> fingerprint), with what the run said.

    ``errors``: the errors the run showed (a cell's exception, the CLI's error line);
    ``output``: the run's text (the CLI's stdout and stderr, or the ``%flow run`` cell's);
    ``store``: the flownb store the run used, if any; ``seconds``: its wall time;
    ``displays``: (code cell number, text) of each value a cell displayed as its Out[]
    (the sequential run only).
    """

    def __init__(self, values: Mapping[str, Fingerprint] = (), *, errors: Iterable[str] = (),  # type: ignore[assignment]
                 output: str = "", store: Path | None = None, seconds: float = 0.0,
                 displays: Iterable[tuple[int, str]] = ()) -> None:  # fmt: skip
        super().__init__(values)
        self.errors = list(errors)
        self.output = output
        self.store = store
        self.seconds = seconds
        self.displays = list(displays)


# -- notebooks ---------------------------------------------------------------------------------


def corpus_notebooks() -> list[Path]:
    return sorted(CORPUS.glob("*.ipynb"))


def case_notebooks() -> list[Path]:
    return sorted(CASES.glob("*.ipynb"))


def prepare(nb: Path, workdir: Path) -> Path:
    """Copy the notebook and the ``data/`` folder beside it into ``workdir``; return the copy."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = nb.parent / "data"
    if data.is_dir():
        shutil.copytree(data, workdir / "data", dirs_exist_ok=True)
    target = workdir / nb.name
    shutil.copyfile(nb, target)
    return target


def read(nb: Path) -> nbformat.NotebookNode:
    return nbformat.read(nb, as_version=4)  # type: ignore[no-any-return]


def convert(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Every code cell becomes a step: its source prefixed with ``%%step c{N}`` (N counts code cells from 1)."""
    out = copy.deepcopy(nb)
    n = 0
    for cell in out.cells:
        if cell.cell_type == "code":
            n += 1
            cell.source = f"%%step c{n}\n{cell.source}"
    return out


def code_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The sources of the code cells, in order: ``code_cells(nb)[N - 1]`` is step ``c{N}``."""
    return [c.source for c in nb.cells if c.cell_type == "code"]


def kernel_env(workdir: Path) -> dict[str, str]:
    """The environment of every kernel and subprocess: the user's, with the store in ``workdir``."""
    env = dict(os.environ)
    env.pop("JPY_SESSION_NAME", None)  # set per notebook below, as JupyterLab does
    env["FLOWNB_DB"] = str(workdir / STORE)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def _collect_source(out: Path) -> str:
    return f"__import__('runpy').run_path({str(COLLECT)!r})['dump'](get_ipython(), {str(out)!r})"


def _load_values(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return pickle.load(f)  # type: ignore[no-any-return]


# -- the three runs ----------------------------------------------------------------------------


def run_sequential(nb: Path, workdir: Path) -> Values:
    """Execute ``nb`` top to bottom in a fresh kernel (cwd = ``workdir``); the final values of its names."""
    path = prepare(nb, workdir)
    doc = read(path)
    doc.cells.append(nbformat.v4.new_code_cell(_collect_source(workdir / VALUES)))
    env = kernel_env(workdir)
    env["JPY_SESSION_NAME"] = str(path)
    client = _client(doc, workdir, allow_errors=False)
    t = time.perf_counter()
    try:
        _execute(client, env)
    except CellExecutionError as exc:
        where = _failed_cell(doc)
        raise NotebookFailed(f"{nb.name} fails top to bottom at {where}: {exc.ename}: {exc.evalue}") from None
    seconds = time.perf_counter() - t
    return Values(_load_values(workdir / VALUES)["values"], seconds=seconds, displays=_displays(doc))


def run_flownb_cli(nb: Path, workdir: Path) -> tuple[int | str, str, Values]:
    """``flownb run`` on the converted notebook, in a subprocess with cwd = ``workdir``.

    The subprocess calls ``flownb.cli.main(["run", NB, "--db", workdir/s.duckdb])`` and then
    fingerprints ``InteractiveShell.instance().user_ns``: what the run left in the notebook
    namespace. Returns the exit status (a string when the process crashed or hung), the
    process's output (stdout and stderr, interleaved), and the values.
    """
    path = prepare(nb, workdir)
    nbformat.write(convert(read(path)), path)
    env = kernel_env(workdir)
    out = workdir / VALUES
    driver = f"import runpy, sys; runpy.run_path({str(COLLECT)!r})['cli_main'](sys.argv[1:])"
    argv = [sys.executable, "-c", driver, str(path), str(workdir / STORE), str(out)]
    t = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, timeout=RUN_TIMEOUT, check=False)  # fmt: skip
        output, returncode = done.stdout, done.returncode
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        returncode = None
    seconds = time.perf_counter() - t
    if not out.exists():
        status = "hung" if returncode is None else f"crashed (exit status {returncode})"
        why = f"the process {status} before the values were collected"
        return why, output, Values(errors=[why, *_tail(output)], output=output, store=workdir / STORE,
                                    seconds=seconds)  # fmt: skip
    payload = _load_values(out)
    code = payload["exit_code"]
    if returncode is None:
        code = f"flownb run ended with {code} but the process hung at exit"
    elif code is None:
        code = 0
    errors = [] if code == 0 else [f"exit status {code}", *_tail(output)]
    return code, output, Values(payload["values"], errors=errors, output=output, store=workdir / STORE, seconds=seconds)


def kernel_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What a user runs in Jupyter: ``%load_ext flownb``, the converted cells, ``%flow run --wait``."""
    out = convert(nb)
    out.cells.insert(0, nbformat.v4.new_code_cell("%load_ext flownb"))
    out.cells.append(nbformat.v4.new_code_cell("%flow run --wait"))
    return out


def run_flownb_kernel(nb: Path, workdir: Path) -> Values:
    """The converted notebook in a fresh kernel with ``%flow run --wait`` last; the final values.

    The notebook is saved in ``workdir`` and named to the kernel by ``JPY_SESSION_NAME``, as
    JupyterLab does. Cells that fail do not stop the run (every cell is executed, as a user
    who reads the errors would); their errors are in ``Values.errors``.
    """
    path = prepare(nb, workdir)
    doc = kernel_notebook(read(path))
    nbformat.write(doc, path)
    doc.cells.append(nbformat.v4.new_code_cell(_collect_source(workdir / VALUES)))
    env = kernel_env(workdir)
    env["JPY_SESSION_NAME"] = str(path)
    client = _client(doc, workdir, allow_errors=True)
    t = time.perf_counter()
    try:
        _execute(client, env)
    except DeadKernelError as exc:
        return Values(errors=[f"the kernel died: {exc}"], store=workdir / STORE, seconds=time.perf_counter() - t)
    except TimeoutError as exc:  # nbclient's CellTimeoutError is one
        return Values(errors=[f"a cell hung: {exc}"], store=workdir / STORE, seconds=time.perf_counter() - t)
    seconds = time.perf_counter() - t
    errors = _cell_errors(doc)
    run_cell = doc.cells[-2]
    output = "".join(o.get("text", "") for o in run_cell.outputs if o.output_type == "stream")
    if not (workdir / VALUES).exists():
        return Values(errors=[*errors, "the values were not collected"], output=output, store=workdir / STORE,
                      seconds=seconds)  # fmt: skip
    values = _load_values(workdir / VALUES)["values"]
    return Values(values, errors=errors, output=output, store=workdir / STORE, seconds=seconds)


def _client(doc: nbformat.NotebookNode, workdir: Path, *, allow_errors: bool) -> NotebookClient:
    return NotebookClient(doc, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=allow_errors,
                          resources={"metadata": {"path": str(workdir)}})  # fmt: skip


def _execute(client: NotebookClient, env: dict[str, str]) -> None:
    """Execute with an event loop of our own, closed after: runs happen on worker threads,
    where nbclient's synchronous wrapper would leave a loop (and its sockets) open.

    A kernel that dies before it answers its first request ran none of the notebook: it is
    started once more. (Seen once in CI, in a plain kernel running an unconverted notebook
    while four others started: the harness's trouble, not the notebook's.)
    """
    try:
        asyncio.run(client.async_execute(env=env))
    except RuntimeError as exc:
        if "before replying to kernel_info" not in str(exc):
            raise
        workdir = Path(client.resources["metadata"]["path"])
        again = _client(client.nb, workdir, allow_errors=client.allow_errors)
        asyncio.run(again.async_execute(env=env))


def _cell_label(source: str, index: int) -> str:
    first = source.strip().splitlines()[0] if source.strip() else ""
    if first.startswith("%%step "):
        return f"[{first.split()[1]}]"
    return f"[cell {index}: {first[:40]}]"


def _failed_cell(doc: nbformat.NotebookNode) -> str:
    n = 0
    for cell in doc.cells:
        if cell.cell_type != "code":
            continue
        n += 1
        if any(o.output_type == "error" for o in cell.get("outputs", [])):
            return f"code cell {n} ({cell.source.strip().splitlines()[0][:60]!r})"
    return "an unknown cell"


def _displays(doc: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """What each code cell showed as its Out[] (text/plain), numbered as the user counts code cells."""
    shown = []
    code = [c for c in doc.cells if c.cell_type == "code"]
    for n, cell in enumerate(code[:-1], start=1):  # the last one is the harness's own
        for o in cell.get("outputs", []):
            if o.output_type == "execute_result" and "text/plain" in o.get("data", {}):
                shown.append((n, o.data["text/plain"]))
    return shown


def _cell_errors(doc: nbformat.NotebookNode) -> list[str]:
    """Each failing cell's error in one line, and the errors flownb's magics printed on stderr."""
    errors = []
    for i, cell in enumerate(doc.cells):
        if cell.cell_type != "code":
            continue
        label = _cell_label(cell.source, i)
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                errors.append(f"{label} {o.ename}: {_one_line(o.evalue)}")
            elif o.output_type == "stream" and o.name == "stderr" and re.search(r"\w*Error\b", o.text):
                # a magic's UsageError is printed, not raised; warnings on stderr are no failure
                errors.append(f"{label} stderr: {_one_line(o.text)}")
    return errors


def _one_line(text: str, limit: int = 400) -> str:
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(output: str, lines: int = 12) -> list[str]:
    return [ln for ln in output.strip().splitlines() if ln.strip()][-lines:]


# -- what the store recorded -------------------------------------------------------------------


def run_summary(db: Path | None) -> str:
    """The store's account of the runs in ``db``: each run's status and error, and each step attempt that failed."""
    if db is None or not db.exists():
        return "no store was written (no run started)"
    import flownb
    from flownb.store.base import forget_store, open_store

    try:
        runs = flownb.sql("SELECT run_id, status, error FROM runs WHERE parent_run_id IS NULL ORDER BY started_at",
                          db=str(db))  # fmt: skip
        steps = flownb.sql(
            "SELECT step, attempt, status, error_type, error FROM steps "
            "WHERE status NOT IN ('succeeded', 'cached') ORDER BY started_at, step",
            db=str(db),
        )
    finally:
        forget_store(open_store(str(db)))
    lines = [f"run {r.run_id}: {r.status}" + (f" ({_one_line(_text(r.error), 300)})" if _text(r.error) else "")
             for r in runs.itertuples()]  # fmt: skip
    for s in steps.itertuples():
        what = f"{s.error_type}: {_one_line(str(s.error), 300)}" if _text(s.error_type) else _text(s.error)
        lines.append(f"  step {s.step} attempt {s.attempt}: {s.status} {what}".rstrip())
    return "\n".join(lines) or "the store holds no run"


def _text(value: Any) -> str:
    """A text column's value, '' for NULL (which pandas gives as None or NaN)."""
    return value if isinstance(value, str) else ""


def step_times(db: Path) -> dict[str, tuple[Any, Any]]:
    """``step -> (started_at, ended_at)`` of each step's last attempt, from the ``steps`` table."""
    import flownb
    from flownb.store.base import forget_store, open_store

    try:
        df = flownb.sql("SELECT step, attempt, started_at, ended_at FROM steps ORDER BY attempt", db=str(db))
    finally:
        forget_store(open_store(str(db)))
    return {str(row.step): (row.started_at, row.ended_at) for row in df.itertuples()}


# -- comparing ---------------------------------------------------------------------------------


def compare(expected: Mapping[str, Fingerprint], got: Mapping[str, Fingerprint]) -> list[str]:
    """The differences between two runs' final values, one readable line per name."""
    diffs = []
    for name in sorted(set(expected) | set(got)):
        if name not in got:
            diffs.append(f"{name}: missing; the sequential run has {describe(expected[name])}")
        elif name not in expected:
            diffs.append(f"{name}: extra name, not in the sequential run: {describe(got[name])}")
        else:
            diff = _diff(expected[name], got[name], name)
            if diff is not None:
                diffs.append(diff)
    return diffs


def describe(fp: Fingerprint, limit: int = 120) -> str:
    """A fingerprint in words, short."""
    kind = fp[0]
    if kind == "value":
        text = f"{fp[1]} {fp[2]!r}"
    elif kind == "float":
        text = f"{fp[1]} {fp[2]}"
    elif kind in ("list", "tuple", "set"):
        items = ", ".join(describe(i, 30) for i in fp[2][:4]) + (", ..." if len(fp[2]) > 4 else "")
        text = f"{fp[1]} of {len(fp[2])} [{items}]"
    elif kind == "dict":
        keys = ", ".join(describe(k, 24) for k, _ in fp[2][:5]) + (", ..." if len(fp[2]) > 5 else "")
        text = f"{fp[1]} of {len(fp[2])} keys [{keys}]"
    elif kind == "ndarray":
        text = f"ndarray {fp[1]} shape {fp[2]} {_preview(fp)}"
    elif kind == "ndarray-object":
        text = f"ndarray object shape {fp[1]}"
    elif kind == "npscalar":
        text = f"numpy {fp[1]} {_preview(('ndarray', fp[1], (), fp[2]))}"
    elif kind == "pandas":
        text = fp[3]
    elif kind in ("module", "function", "class"):
        text = f"{kind} {fp[1]}"
    elif kind == "object":
        text = f"{fp[1]} instance"
    elif kind == "reduce":
        text = f"{fp[1]} {fp[3]}"
    elif kind == "global":
        text = f"{fp[1]} {fp[2]}"
    elif kind == "error":
        text = f"{fp[1]} (not fingerprinted: {fp[2]})"
    else:
        text = f"<{fp[1]}>" + ("" if kind == "type" else f" ({kind})")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preview(fp: Fingerprint) -> str:
    import numpy as np

    flat = np.frombuffer(fp[3], dtype=np.dtype(fp[1]))
    head = ", ".join(repr(v.item()) for v in flat[:5])
    return f"[{head}{', ...' if flat.size > 5 else ''}]"


def _diff(a: Fingerprint, b: Fingerprint, path: str) -> str | None:
    """The first difference between two fingerprints, or None when they are equal."""
    if a == b:
        return None
    kind = a[0]
    if kind != b[0] or a[1] != b[1]:
        return f"{path}: expected {describe(a)}, got {describe(b)}"
    if kind == "ndarray-object":
        a, b = ("list", "ndarray", a[2]), ("list", "ndarray", b[2])  # same shape: item by item, flat
        kind = "list"
    if kind in ("list", "tuple"):
        if len(a[2]) != len(b[2]):
            return f"{path}: expected {describe(a)}, got {describe(b)} (length {len(a[2])} vs {len(b[2])})"
        for i, (x, y) in enumerate(zip(a[2], b[2], strict=True)):
            diff = _diff(x, y, f"{path}[{i}]")
            if diff is not None:
                return diff
        return None
    if kind == "set":
        only_a = [describe(x, 40) for x in a[2] if x not in b[2]]
        only_b = [describe(x, 40) for x in b[2] if x not in a[2]]
        return f"{path}: {a[1]} differs: only expected {only_a[:4]}, only got {only_b[:4]}"
    if kind == "dict":
        da = {repr(k): (k, v) for k, v in a[2]}
        db = {repr(k): (k, v) for k, v in b[2]}
        missing = [describe(da[k][0], 40) for k in da if k not in db]
        extra = [describe(db[k][0], 40) for k in db if k not in da]
        if missing or extra:
            return f"{path}: {a[1]} keys differ: missing {missing[:4]}, extra {extra[:4]}"
        for k, (key, value) in da.items():
            label = repr(key[2]) if key[0] == "value" else describe(key, 30)
            diff = _diff(value, db[k][1], f"{path}[{label}]")
            if diff is not None:
                return diff
        return None
    if kind == "object":
        state_a, state_b = a[2], b[2]
        if state_a[0] == state_b[0] == "dict":
            da = {k[2]: v for k, v in state_a[2] if k[0] == "value"}
            db = {k[2]: v for k, v in state_b[2] if k[0] == "value"}
            if set(da) != set(db):
                return f"{path}: {a[1]} attributes differ: missing {sorted(set(da) - set(db))}, extra {sorted(set(db) - set(da))}"
            for attr in da:
                diff = _diff(da[attr], db[attr], f"{path}.{attr}")
                if diff is not None:
                    return diff
            return None
        return _diff(state_a, state_b, f"{path}.__getstate__()")
    if kind == "ndarray":
        if a[2] != b[2]:
            return f"{path}: expected {describe(a)}, got {describe(b)}"
        return _array_diff(a, b, path)
    if kind == "pandas":
        return _pandas_diff(a, b, path)
    if kind == "reduce":
        return _reduce_diff(a, b, path)
    return f"{path}: expected {describe(a)}, got {describe(b)}"


def _array_diff(a: Fingerprint, b: Fingerprint, path: str) -> str:
    import numpy as np

    dtype, shape = np.dtype(a[1]), a[2]
    x = np.frombuffer(a[3], dtype=dtype).reshape(shape)
    y = np.frombuffer(b[3], dtype=dtype).reshape(shape)
    try:
        same = x == y
        if dtype.kind in "fc":
            same |= np.isnan(x) & np.isnan(y)
        differ = np.argwhere(~same)
    except (TypeError, ValueError):  # structured or odd dtypes: say no more than that they differ
        differ = np.empty((0, 0), dtype=np.intp)
    if shape == () or differ.size == 0:
        return f"{path}: expected {describe(a)}, got {describe(b)}"
    where = tuple(int(i) for i in differ[0])
    return (f"{path}: ndarray {a[1]} {shape} differs at {len(differ)} places, first {list(where)}: "
            f"expected {x[where]!r}, got {y[where]!r}")  # fmt: skip


def _pandas_diff(a: Fingerprint, b: Fingerprint, path: str) -> str | None:
    import pandas as pd

    if a[2] is None or b[2] is None:
        return None if a[3] == b[3] else f"{path}: expected {a[3]}, got {b[3]}"
    x, y = pickle.loads(a[2]), pickle.loads(b[2])  # noqa: S301  (our own fingerprints)
    try:
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        elif isinstance(x, pd.Series):
            pd.testing.assert_series_equal(x, y, check_exact=True)
        elif isinstance(x, pd.Index):
            pd.testing.assert_index_equal(x, y, exact=True, check_exact=True)
        else:
            pd.testing.assert_extension_array_equal(x, y, check_exact=True)
    except AssertionError as exc:
        return f"{path}: {_one_line(str(exc), 300)}; expected {a[3]}; got {b[3]}"
    if getattr(x, "attrs", {}) != getattr(y, "attrs", {}):
        return f"{path}: attrs differ: expected {x.attrs!r}, got {y.attrs!r}"
    return None


def _reduce_diff(a: Fingerprint, b: Fingerprint, path: str) -> str | None:
    for label, x, y in zip(_REDUCE_PARTS, a[2], b[2], strict=True):
        diff = _diff(x, y, f"{path}{label}")
        if diff is not None:
            return diff
    return None


_REDUCE_PARTS = (".<reduce callable>", ".<reduce args>", ".<state>", ".<list items>", ".<dict items>")


# -- running many at once ----------------------------------------------------------------------

MODES: dict[str, Callable[[Path, Path], Any]] = {
    "sequential": run_sequential,
    "sequential-again": run_sequential,
    "cli": run_flownb_cli,
    "kernel": run_flownb_kernel,
}


@dataclass
class RunCache:
    """Each notebook's runs, started together on a small pool and kept for the module's tests.

    Asking for a notebook starts all its ``modes`` at once (each in its own working directory
    under ``root``) and the runs of the next ``ahead`` notebooks in ``order``. A run spends
    much of its time waiting (a kernel starting, a client polling), so more runs than cores
    at once keep the cores busy.
    """

    root: Path
    order: list[Path]
    modes: tuple[str, ...] = ("sequential", "cli", "kernel")
    workers: int = 5
    ahead: int = 2

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="notebook-run")
        self._futures: dict[tuple[str, str], Future[Any]] = {}
        self._lock = threading.Lock()

    def workdir(self, nb: Path, mode: str) -> Path:
        return self.root / f"{nb.parent.name}-{nb.stem}" / mode

    def _submit(self, nb: Path) -> None:
        with self._lock:
            for mode in self.modes:
                key = (str(nb), mode)
                if key not in self._futures:
                    self._futures[key] = self._pool.submit(MODES[mode], nb, self.workdir(nb, mode))

    def get(self, nb: Path, mode: str) -> Any:
        self._submit(nb)
        if nb in self.order:
            i = self.order.index(nb)
            for later in self.order[i + 1 : i + 1 + self.ahead]:
                self._submit(later)
        return self._futures[(str(nb), mode)].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def selected_notebooks(request: Any, notebooks: list[Path]) -> list[Path]:
    """The notebooks the session's selected tests of this module ask for, in order: what a
    :class:`RunCache` may start ahead of time (a test that names none asks for it itself)."""
    wanted = set()
    for item in request.session.items:
        if item.module is request.module and hasattr(item, "callspec"):
            wanted.add(item.callspec.params.get("nb"))
    return [nb for nb in notebooks if nb in wanted]


def report(label: str, diffs: list[str], values: Values, *, exit_code: int | str | None = None,
           limit: int = 12) -> str:  # fmt: skip
    """A failure message: what the run said, what the store recorded, then the differences."""
    lines = [f"{label}: {len(diffs)} name(s) differ from the sequential run"]
    if exit_code is not None and exit_code != 0:
        lines.append(f"exit status: {exit_code}")
    if values.errors:
        lines.append("errors:")
        lines += [f"  {e}" for e in values.errors[:limit]]
    if values.store is not None and (values.errors or (exit_code not in (None, 0))):
        lines.append("store: " + run_summary(values.store).replace("\n", "\n  "))
    if diffs:
        lines.append("differences:")
        lines += [f"  {d}" for d in diffs[:limit]]
        if len(diffs) > limit:
            lines.append(f"  ... and {len(diffs) - limit} more")
    return "\n".join(lines)
