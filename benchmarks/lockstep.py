"""A chain of no-op steps in two checkouts of flownb, taken in turns (sync commits, or --store).

A chain that commits before every dependent is bound by the disk: here a commit's
``fdatasync`` takes 1 to 3 ms, and how long drifts by a third over seconds. Two
checkouts timed one after the other, minutes apart (``overhead.py`` in each), then
differ by more than the 10% one wants to resolve: on 2026-11-29 the same code
measured up to 40% apart from one round to the next.

So this script keeps one process per checkout alive and lets them run in
turns: each round, one process times a chain of ``--steps`` no-op steps (and one
bare DuckDB insert-and-commit just before it, as ``overhead.py`` does), then the
other; which goes first alternates. Each round is one pair measured within
seconds of each other, and the answer is the median of the pairs' ratios (and how
many pairs the second checkout lost). Both processes first run the same prelude
(``--prelude``: what ``overhead.py`` runs before its chain), each alone.

Two processes of one checkout give the method's own noise: on 2026-11-29, 8
rounds of 3,000 steps gave a median ratio of 1.06 (5 pairs of 8 slower).

    python benchmarks/lockstep.py BASE [OTHER] [--steps 3000] [--rounds 12] [--prelude samc]
                                  [--store sync|async|memory]

``--store async`` or ``memory`` times the chain with async commits or in memory
instead (no disk to wait for; the figures beside "bare" are then the same bare
commit, for what it is worth).

``BASE`` and ``OTHER`` are directories holding a ``flownb/`` package (a
``git worktree`` of another commit, say); ``OTHER`` defaults to this checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
#: what the prelude letters run, before the rounds: wide runs (sync, async, in memory), chain baselines
PRELUDES = {"s": "wide, sync commits", "a": "wide, async commits", "m": "wide, in memory", "c": "chain baselines"}


def child(prelude: str, steps: int, store: str) -> None:
    """One checkout's side: the prelude, then one bare commit and one chain per line on stdin."""
    sys.path.insert(0, str(HERE.parent))
    import overhead

    from flownb.store.base import forget_store, open_store

    tmp = tempfile.mkdtemp(prefix="flownb-lockstep-")
    for letter, durability in (("s", "sync"), ("a", "async"), ("m", "sync")):
        if letter in prelude:
            db = ":memory:" if letter == "m" else os.path.join(tmp, f"wide-{durability}.duckdb")
            overhead.time_flownb("wide", 10_000, db, durability)
            if db != ":memory:":
                forget_store(open_store(db))
    if "c" in prelude:
        overhead.time_asyncio("chain", 10_000)
        overhead.time_dask("chain", 10_000)
    print("ready", flush=True)
    chain_db = ":memory:" if store == "memory" else os.path.join(tmp, "chain.duckdb")
    durability = "async" if store == "async" else "sync"
    bare_db = os.path.join(tmp, "bare.duckdb")
    for _ in sys.stdin:
        bare = overhead.time_bare_commit(bare_db)
        wall, cpu = overhead.time_run(overhead.build("chain", steps, chain_db, durability))
        print(wall / steps, bare, cpu / steps, flush=True)


class Side:
    """A checkout's process, started and taken through its prelude."""

    def __init__(self, tree: Path, prelude: str, steps: int, store: str) -> None:
        self.tree = tree
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--child", "--prelude", prelude, "--steps", str(steps), "--store", store],
            cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        if self._line() != "ready":
            raise SystemExit(f"lockstep: the process for {tree} did not start (see its error above)")
        #: (wall seconds a step, one bare commit, CPU seconds a step) of each round
        self.runs: list[tuple[float, float, float]] = []

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def time_one(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        per_step, bare, cpu = map(float, self._line().split())
        self.runs.append((per_step, bare, cpu))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", nargs="?", type=Path)
    parser.add_argument("other", nargs="?", type=Path, default=HERE.parents[1])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--prelude", default="samc", help="letters of: " + ", ".join(f"{k} {v}" for k, v in PRELUDES.items())
    )
    parser.add_argument("--store", choices=("sync", "async", "memory"), default="sync")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.prelude, args.steps, args.store)
        return
    if args.base is None:
        parser.error("give the checkout to compare with (a directory holding flownb/)")
    for tree in (args.base, args.other):
        if not (tree / "flownb" / "__init__.py").is_file():
            parser.error(f"{tree} holds no flownb/ package")
    print(f"chains of {args.steps} no-op steps, store {args.store}, {args.rounds} rounds, prelude {args.prelude!r}")
    base, other = (Side(tree, args.prelude, args.steps, args.store) for tree in (args.base, args.other))
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    for i in range(args.rounds):
        for side in (base, other) if i % 2 == 0 else (other, base):
            side.time_one()
        (b, b_bare, b_cpu), (o, o_bare, o_cpu) = base.runs[-1], other.runs[-1]
        ratios.append(o / b)
        cpu_ratios.append(o_cpu / b_cpu)
        print(f"round {i + 1:2}: base {b * 1e6:6.0f} us/step ({b / b_bare:.2f}x bare, CPU {b_cpu * 1e6:.0f})"
              f"   other {o * 1e6:6.0f} ({o / o_bare:.2f}x bare, CPU {o_cpu * 1e6:.0f})"
              f"   other/base {o / b:.3f}")  # fmt: skip
    base.stop()
    other.stop()

    def median(side: Side, what: str) -> float:
        return statistics.median({"wall": r[0], "bare": r[0] / r[1], "cpu": r[2]}[what] for r in side.runs)

    print(f"\nother/base, median of the pairs: {statistics.median(ratios):.3f} "
          f"(other slower in {sum(r > 1 for r in ratios)} of {len(ratios)})")  # fmt: skip
    print(f"CPU, other/base, median of the pairs: {statistics.median(cpu_ratios):.3f} "
          f"(other more in {sum(r > 1 for r in cpu_ratios)} of {len(cpu_ratios)})")  # fmt: skip
    print(f"median us/step: base {median(base, 'wall') * 1e6:.0f}, other {median(other, 'wall') * 1e6:.0f}")
    print(f"median CPU us/step: base {median(base, 'cpu') * 1e6:.0f}, other {median(other, 'cpu') * 1e6:.0f}")
    print(f"median x one bare commit: base {median(base, 'bare'):.2f}, other {median(other, 'bare'):.2f}")


if __name__ == "__main__":
    main()
