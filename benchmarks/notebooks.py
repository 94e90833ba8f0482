"""The notebook corpus under flownb against the same notebooks run top to bottom.

    python benchmarks/notebooks.py [--repeat 3] [--only NAME ...]

For each notebook of tests/notebooks/corpus, medians over the repeats:

1. ``nbclient``: the original notebook executed top to bottom by nbclient in a fresh
   kernel: in total (kernel start, every cell, shutdown) and its cells alone.
2. ``flownb run``: the converted notebook (every code cell a ``%%step``) run by the
   ``flownb run NB --db S`` command in a subprocess, end to end (process start, imports,
   definitions, the run, exit), and the run alone (``runs.duration_ms``).
   Ratios: total / total, and run alone / cells alone (target: median at most 1.0).
3. ``%flow run --wait`` in a kernel (extension loaded, steps defined): the cell's
   execution time as its client sees it minus the run's ``runs.duration_ms``, what
   waiting for a run costs beyond the run itself (target: under 0.3 s).

Each run gets a working directory of its own with a copy of the notebook and its data,
as the tests do (tests/notebook/notebook_runs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness lives with the tests

from tests.notebook.notebook_runs import STORE, convert, corpus_notebooks, kernel_env, kernel_notebook, prepare, read

CELL_TIMEOUT = 300


@dataclass
class Sample:
    seq_total: float
    seq_cells: float
    cli_total: float
    cli_run: float | None  # runs.duration_ms of the CLI's run, None when it did not succeed
    wait_cell: float | None
    wait_run: float | None
    before: float | None  # from sending the %flow run cell to the run's recorded start
    after: float | None  # from the run's recorded end to the cell's end
    status: str


@dataclass
class RunRecord:
    status: str
    duration: float | None = None  # seconds, from runs.duration_ms
    started: float | None = None  # epoch seconds
    ended: float | None = None


def last_run(db: Path) -> RunRecord:
    """The latest top-level run in ``db``, as the ``runs`` table records it."""
    import flownb
    from flownb.store.base import forget_store, open_store

    if not db.exists():
        return RunRecord("no run")
    try:
        df = flownb.sql("SELECT status, duration_ms, epoch(started_at) AS s, epoch(ended_at) AS e FROM runs "
                        "WHERE parent_run_id IS NULL ORDER BY started_at DESC LIMIT 1", db=str(db))  # fmt: skip
    finally:
        forget_store(open_store(str(db)))
    if df.empty:
        return RunRecord("no run")
    row = df.iloc[0]

    def num(v: object) -> float | None:
        return None if v is None or v != v else float(v)  # type: ignore[arg-type]

    ms = num(row["duration_ms"])
    return RunRecord(str(row["status"]), ms / 1000 if ms is not None else None, num(row["s"]), num(row["e"]))


async def _timed_cells(
    client: NotebookClient, env: dict[str, str], time_cell: int | None
) -> tuple[float, float, tuple[float, float]]:
    """Start-up and all cells in seconds, and the wall clock (epoch) when the cell ``time_cell``
    was sent and when it ended; shutdown is in the caller's total."""
    t0 = time.perf_counter()
    async with client.async_setup_kernel(env=env):
        t1 = time.perf_counter()
        span = (0.0, 0.0)
        for i, cell in enumerate(client.nb.cells):
            sent = time.time()
            await client.async_execute_cell(cell, i)
            if i == time_cell:
                span = (sent, time.time())
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, span


def time_nbclient(nb: Path, workdir: Path) -> tuple[float, float]:
    """Total (kernel start to shutdown) and cells-only seconds of the notebook run top to bottom."""
    path = prepare(nb, workdir)
    client = NotebookClient(read(path), timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})  # fmt: skip
    env = kernel_env(workdir)
    env["JPY_SESSION_NAME"] = str(path)
    t = time.perf_counter()
    _, cells, _ = asyncio.run(_timed_cells(client, env, None))
    return time.perf_counter() - t, cells


def flownb_command() -> list[str]:
    found = shutil.which("flownb")
    return [found] if found else [sys.executable, "-m", "flownb.cli"]


def time_flownb_run(nb: Path, workdir: Path) -> tuple[float, RunRecord]:
    """End-to-end seconds of ``flownb run``, the run's own duration, and its status."""
    path = prepare(nb, workdir)
    nbformat.write(convert(read(path)), path)
    db = workdir / STORE
    t = time.perf_counter()
    done = subprocess.run([*flownb_command(), "run", str(path), "--db", str(db)], cwd=workdir,
                          env=kernel_env(workdir), capture_output=True, text=True, check=False)  # fmt: skip
    total = time.perf_counter() - t
    run = last_run(db)
    if done.returncode != 0:
        run.status = f"exit {done.returncode}: {run.status}"
    return total, run


def time_kernel_wait(nb: Path, workdir: Path) -> tuple[tuple[float, float], RunRecord]:
    """When the ``%flow run --wait`` cell was sent and ended (epoch seconds), and its run's record."""
    path = prepare(nb, workdir)
    doc = kernel_notebook(read(path))
    nbformat.write(doc, path)
    client = NotebookClient(doc, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})  # fmt: skip
    env = kernel_env(workdir)
    env["JPY_SESSION_NAME"] = str(path)
    _, _, span = asyncio.run(_timed_cells(client, env, len(doc.cells) - 1))
    return span, last_run(workdir / STORE)


def measure(nb: Path, root: Path, i: int) -> Sample:
    base = root / f"{nb.stem}-{i}"
    seq_total, seq_cells = time_nbclient(nb, base / "nbclient")
    cli_total, cli = time_flownb_run(nb, base / "cli")
    (sent, done), k = time_kernel_wait(nb, base / "kernel")
    status = "ok" if cli.status == k.status == "succeeded" else f"cli {cli.status}; kernel {k.status}"
    kernel_ok = k.status == "succeeded" and k.started is not None and k.ended is not None
    return Sample(
        seq_total, seq_cells, cli_total, cli.duration if cli.status == "succeeded" else None,
        done - sent if kernel_ok else None, k.duration if kernel_ok else None,
        k.started - sent if kernel_ok else None, done - k.ended if kernel_ok else None,  # type: ignore[operator]
        status,
    )  # fmt: skip


def med(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def fmt(v: float | None, spec: str = "6.2f") -> str:
    return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=[], help="notebooks whose name contains one of these")
    args = parser.parse_args()
    notebooks = [nb for nb in corpus_notebooks() if not args.only or any(o in nb.stem for o in args.only)]
    root = Path(tempfile.mkdtemp(prefix="flownb-bench-notebooks-"))
    os.environ.pop("JPY_SESSION_NAME", None)
    print(f"{len(notebooks)} notebooks, median of {args.repeat} runs each; seconds\n")
    head = (f"{'notebook':30} {'nbclient':>8} {'cells':>6} {'flownb':>7} {'run':>6} {'x total':>8} {'x run':>6}"
            f" {'wait':>6} {'run':>6} {'beyond':>7} {'before':>6} {'after':>6}  status")  # fmt: skip
    print(head)
    ratios, run_ratios, beyond = [], [], []
    for nb in notebooks:
        samples = [measure(nb, root, i) for i in range(args.repeat)]
        seq_total, seq_cells = med([s.seq_total for s in samples]), med([s.seq_cells for s in samples])
        cli_total, cli_run = med([s.cli_total for s in samples]), med([s.cli_run for s in samples])
        waits = [s.wait_cell - s.wait_run for s in samples if s.wait_cell is not None and s.wait_run is not None]
        wait_cell, wait_run = med([s.wait_cell for s in samples]), med([s.wait_run for s in samples])
        extra = statistics.median(waits) if waits else None
        before, after = med([s.before for s in samples]), med([s.after for s in samples])
        status = "; ".join(sorted({s.status for s in samples}))
        ratio = cli_total / seq_total if cli_total and seq_total else None
        run_ratio = cli_run / seq_cells if cli_run is not None and seq_cells else None
        if status == "ok":
            ratios.append(ratio)
            run_ratios.append(run_ratio)
            beyond.append(extra)
        print(
            f"{nb.stem[:30]:30} {fmt(seq_total, '8.2f')} {fmt(seq_cells)} {fmt(cli_total, '7.2f')} {fmt(cli_run)} "
            f"{fmt(ratio, '8.2f')} {fmt(run_ratio)} {fmt(wait_cell)} {fmt(wait_run)} {fmt(extra, '7.3f')} "
            f"{fmt(before)} {fmt(after)}  {status}"
        )
    print()
    print("nbclient: kernel start to shutdown; cells: its cells alone; flownb: `flownb run` end to end;")
    print("run: runs.duration_ms; x total = flownb / nbclient; x run = run / cells; wait: the %flow run --wait")
    print("cell in a kernel; beyond = wait - its run's duration_ms, of which: before = from sending the cell to")
    print("the run's recorded start, after = from the run's recorded end to the cell's end")
    print(f"\nover the {len(ratios)} notebooks that succeeded under both flownb run and %flow run:")
    print(f"  median flownb run / nbclient, end to end: {fmt(med(ratios), '.2f')} (target <= 1.0)")
    print(f"  median run alone / cells alone:            {fmt(med(run_ratios), '.2f')}")
    print(f"  median %flow run --wait beyond the run:    {fmt(med(beyond), '.3f')} s (target < 0.3)")


if __name__ == "__main__":
    main()
