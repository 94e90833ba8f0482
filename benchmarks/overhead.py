"""Per-step overhead of the engine on 10,000 no-op steps, wide and chain.

Prints, from one run: flownb with the DuckDB store in sync durability, in
async durability, and in memory; beside a plain asyncio baseline and dask's
threaded scheduler on the same graphs (``dask.threaded.get``, with 8 workers
like flownb's default ``max_concurrency``, and with dask's default pool of one
thread a core), as ratios ("x dask" is against 8 workers); and the latency of
one bare DuckDB insert-and-commit, which bounds a chain with sync durable commits
(measured in turns with the chain's runs: a disk's commit latency drifts).

Each timed run starts from a settled heap: everything alive is collected and
frozen (``gc.collect(); gc.freeze()``), so no run pays to walk what the imports
or earlier runs left, and how often the collector's full collections come no
longer depends on them (CPython runs one when the objects promoted since the last
exceed a quarter of the old generation: a process that imported twice as much,
or kept an earlier run's records, had fewer). On 2026-11-29, without it, the same
dask graph took 19% longer in 3529e88's processes than in main's, and 3529e88's
in-memory chain (its one store kept every earlier run's events) looked 11% faster;
with it, both differences were 3%. ``--heap as-is`` times without it.

    python benchmarks/overhead.py [--steps 10000] [--repeat 3] [--heap settled|as-is]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import flownb
from flownb.store.base import forget_store, open_store


def noop(*_: object) -> None:
    return None


SETTLE_HEAP = True


def settle_heap() -> None:
    """Start a timed run from the same collector state, whatever ran before (see the docstring)."""
    if SETTLE_HEAP:
        gc.collect()
        gc.freeze()


def build(shape: str, n: int, db: str, durability: str) -> flownb.Flow:
    flow = flownb.Flow(f"bench-{shape}", db=db, durability=durability)  # type: ignore[arg-type]
    for i in range(n):
        after = (f"s{i - 1}",) if shape == "chain" and i else ()
        flow.step(lambda: None, name=f"s{i}", after=after)
    return flow


def time_flownb(shape: str, n: int, db: str, durability: str) -> float:
    return time_run(build(shape, n, db, durability))[0]


def time_run(flow: flownb.Flow) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of one run of ``flow``, from a settled heap."""
    settle_heap()
    cpu, wall = time.process_time(), time.perf_counter()
    run = flow.run().wait()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert run.status == "succeeded", run.error
    return wall, cpu


def time_asyncio(shape: str, n: int) -> float:
    """The floor: the same functions on a thread pool from asyncio, recording nothing."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if shape == "chain":
            for _ in range(n):
                await loop.run_in_executor(None, noop)
        else:
            sem = asyncio.Semaphore(8)

            async def one() -> None:
                async with sem:
                    await loop.run_in_executor(None, noop)

            await asyncio.gather(*(one() for _ in range(n)))

    settle_heap()
    t = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t


def time_dask(shape: str, n: int, workers: int | None = 8) -> float:
    """dask's threaded scheduler: with 8 workers (flownb's default max_concurrency), or its default pool."""
    import dask.threaded

    graph: dict[str, object] = {}
    for i in range(n):
        graph[f"s{i}"] = (noop, f"s{i - 1}") if shape == "chain" and i else (noop,)
    settle_heap()
    t = time.perf_counter()
    dask.threaded.get(graph, list(graph), num_workers=workers)
    return time.perf_counter() - t


def time_bare_commit(path: str, repeat: int = 100) -> float:
    """One bare insert-and-commit of a small row (median); the file is reused between calls."""
    import duckdb

    con = duckdb.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS t (run_id VARCHAR, seq BIGINT, ts TIMESTAMPTZ, payload VARCHAR)")
    samples = []
    for i in range(repeat):
        t = time.perf_counter()
        con.execute("INSERT INTO t VALUES (?, ?, now(), ?)", ["r", i, "{}"])
        samples.append(time.perf_counter() - t)
    con.close()
    return statistics.median(samples)


def time_chain_beside_bare(n: int, db: str, bare_db: str, repeat: int) -> tuple[float, float]:
    """A sync durable chain and the bare commit, measured in turns: the disk's commit
    latency drifts over minutes on a shared machine, so each run gets its own baseline."""
    chains, bares = [], []
    for _ in range(repeat):
        bares.append(time_bare_commit(bare_db))
        chains.append(time_flownb("chain", n, db, "sync") / n)
    return statistics.median(chains), statistics.median(bares)


def median_of(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--heap", choices=("settled", "as-is"), default="settled")
    args = parser.parse_args()
    n, repeat = args.steps, args.repeat
    global SETTLE_HEAP
    SETTLE_HEAP = args.heap == "settled"
    tmp = Path(tempfile.mkdtemp(prefix="flownb-bench-"))
    bare_db = str(tmp / "bare.duckdb")
    print(f"{n} no-op steps, median of {repeat} runs, heap {args.heap}\n")
    print(f"{'shape':6} {'engine':24} {'us/step':>9} {'x asyncio':>10} {'x dask':>8}")
    results: dict[tuple[str, str], float] = {}
    for shape in ("wide", "chain"):
        base = median_of(partial(time_asyncio, shape, n), repeat) / n
        dask_t = median_of(partial(time_dask, shape, n), repeat) / n
        dask_default = median_of(partial(time_dask, shape, n, None), repeat) / n
        rows = [
            ("asyncio (floor)", base),
            ("dask threaded, 8 workers", dask_t),
            ("dask threaded, default", dask_default),
        ]
        for label, db, durability in (
            ("flownb duckdb sync", str(tmp / f"{shape}-sync.duckdb"), "sync"),
            ("flownb duckdb async", str(tmp / f"{shape}-async.duckdb"), "async"),
            ("flownb memory", ":memory:", "sync"),
        ):
            if shape == "chain" and durability == "sync" and db != ":memory:":
                per, bare = time_chain_beside_bare(n, db, bare_db, repeat)
            else:
                per = median_of(partial(time_flownb, shape, n, db, durability), repeat) / n
            results[(shape, label)] = per
            rows.append((label, per))
            if db != ":memory:":
                forget_store(open_store(db))
        for label, per in rows:
            print(f"{shape:6} {label:24} {per * 1e6:9.1f} {per / base:10.2f} {per / dask_t:8.2f}")
        results[(shape, "dask")] = dask_t
        results[(shape, "dask default")] = dask_default
        print()
    wide, chain = results[("wide", "flownb duckdb sync")], results[("chain", "flownb duckdb sync")]
    print("targets:")
    print(f"  wide, sync durable: {wide * 1e6:.1f} us/step (target <= 100) = "
          f"{wide / results[('wide', 'dask')]:.2f}x dask threaded with 8 workers, "
          f"{wide / results[('wide', 'dask default')]:.2f}x with its default pool (target <= 0.75)")
    print(
        f"  chain, sync durable: {chain * 1e6:.0f} us/step = {chain / bare:.2f}x one bare insert+commit "
        f"(target <= 1.5), measured in turns with it: {bare * 1e6:.0f} us"
    )


if __name__ == "__main__":
    main()
