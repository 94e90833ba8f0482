"""Processes sharing one store file: writers and a reader querying every 0.2 s.

For N writer processes (1, 2, 4), each running 25 runs of a 10-step chain one
after another, while a reader process queries ``runs`` every 0.2 s (started
first, so the file is the reader's when the writers come): the runs that
succeeded, the wait for each turn with the file (p50, p99, max, over every turn
of every writer; the reader's p99 beside), and the total time against the same
runs from one process with no reader.

    python benchmarks/contention.py [--runs 25] [--writers 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flownb
from flownb.store.base import open_store

ROOT = Path(__file__).parents[1]
STEPS = 10


def build(db: str) -> flownb.Flow:
    flow = flownb.Flow("contention", db=db)
    for i in range(STEPS):
        flow.step(lambda: None, name=f"s{i}", after=(f"s{i - 1}",) if i else ())
    return flow


def waits_of(db: str) -> list[float]:
    return list(getattr(open_store(db), "turn_waits", []))


def write(db: str, runs: int) -> None:
    flow = build(db)
    ok, errors = 0, []
    for _ in range(runs):
        run = flow.run().wait(600)
        ok += run.status == "succeeded"
        if run.status != "succeeded":
            errors.append(str(run.error)[:200])
    print(json.dumps({"succeeded": ok, "errors": errors, "waits": waits_of(db)}), flush=True)


def read(db: str, stop: Path) -> None:
    queries, errors = 0, 0
    while not stop.exists():
        try:
            flownb.sql("SELECT status, count(*) FROM runs GROUP BY status", db=db)
        except flownb.FlownbError:
            errors += 1
        queries += 1
        if queries == 1:
            print("reading", flush=True)
        time.sleep(0.2)
    print(json.dumps({"queries": queries, "errors": errors, "waits": waits_of(db)}), flush=True)


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env)


def _last_json(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=1800)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def contended(tmp: Path, writers: int, runs: int) -> dict[str, object]:
    db, stop = str(tmp / f"shared-{writers}.duckdb"), tmp / f"stop-{writers}"
    reader = _spawn("--worker", "read", db, str(stop))
    assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
    t = time.perf_counter()
    procs = [_spawn("--worker", "write", db, str(runs)) for _ in range(writers)]
    answers = [_last_json(p) for p in procs]
    total = time.perf_counter() - t
    stop.write_text("stop")
    read_answer = _last_json(reader)
    waits = [float(w) for a in answers for w in a["waits"]]  # type: ignore[attr-defined]
    return {
        "ok": sum(int(a["succeeded"]) for a in answers),  # type: ignore[call-overload]
        "errors": [e for a in answers for e in a["errors"]][:3],  # type: ignore[attr-defined]
        "waits": waits,
        "reader_waits": [float(w) for w in read_answer["waits"]],  # type: ignore[attr-defined]
        "reader_errors": read_answer["errors"],
        "total": total,
    }


def one_process(tmp: Path, writers: int, runs: int) -> float:
    """The same runs from one process, one after another, no reader (a fresh interpreter, like a writer)."""
    db = str(tmp / f"alone-{writers}.duckdb")
    t = time.perf_counter()
    answer = _last_json(_spawn("--worker", "write", db, str(writers * runs)))
    elapsed = time.perf_counter() - t
    assert answer["succeeded"] == writers * runs, answer["errors"]
    return elapsed


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--writers", default="1,2,4")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, db, arg = args.worker
        write(db, int(arg)) if mode == "write" else read(db, Path(arg))
        return
    tmp = Path(tempfile.mkdtemp(prefix="flownb-contention-"))
    print(f"writers x {args.runs} runs of a {STEPS}-step chain, a reader querying every 0.2 s; waits for the file\n")
    print(f"{'writers':>7} {'runs ok':>9} {'wait p50':>9} {'p99':>8} {'max':>8} {'reader p99':>11} "
          f"{'total':>8} {'1 process':>10} {'x 1 proc':>9}")  # fmt: skip
    for writers in (int(w) for w in args.writers.split(",")):
        got = contended(tmp, writers, args.runs)
        alone = one_process(tmp, writers, args.runs)
        waits: list[float] = got["waits"]  # type: ignore[assignment]
        total = float(got["total"])  # type: ignore[arg-type]
        print(
            f"{writers:7d} {got['ok']:>4}/{writers * args.runs:<4} {statistics.median(waits) * 1e3:7.1f}ms "
            f"{pct(waits, 0.99) * 1e3:6.0f}ms {max(waits) * 1e3:6.0f}ms "
            f"{pct(got['reader_waits'], 0.99) * 1e3:9.0f}ms "  # type: ignore[arg-type]
            f"{total:7.1f}s {alone:9.1f}s {total / alone:9.2f}"
        )
        if got["errors"] or got["reader_errors"]:
            print(f"        errors: {got['errors']} reader: {got['reader_errors']}")
    print("\nwait: for each turn a writer took with the file (it keeps the file while it works, until"
          " another process waits); 1 process: the same runs one after another in one fresh process, no reader")


if __name__ == "__main__":
    main()
