"""Scale-out benchmark: CPU-bound steps on local threads against a 2-worker Dask cluster.

Prints, for one run of this script:

* the wall time of N CPU-bound steps (a ``foreach`` of N items, each about
  ``--ms`` milliseconds of pure Python) on flownb's local threads, and on a
  LocalCluster of 2 single-threaded worker processes: the speedup;
* the same functions through dask's own ``client.map`` on the same cluster,
  in the same run: flownb's overhead per task on Dask, and the ratio;

Each measurement is repeated ``--repeat`` times; medians are printed.

    python benchmarks/dask_scale.py                 # 1,000 steps of 50 ms (a few minutes)
    python benchmarks/dask_scale.py --n 200 --ms 20 # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import dask
from distributed import Client, LocalCluster

import flownb

WORKERS = 2


def burn(item: int, loops: int) -> int:
    """A fixed amount of pure-Python CPU work (a fixed count, not a deadline: under the GIL,
    threads that waited for it would otherwise do less work and look faster)."""
    x = item
    for _ in range(loops):
        x = (x * 1103515245 + 12345) % 2147483648
    return x


def calibrate(ms: float) -> int:
    """The loop count that takes about ``ms`` milliseconds here, alone on a core."""
    loops = 10_000
    while True:
        t0 = time.perf_counter()
        burn(0, loops)
        took = time.perf_counter() - t0
        if took > 0.05:
            return max(1, round(loops * (ms / 1000) / took))
        loops *= 2


def flownb_wall(n: int, loops: int, executor: Any, concurrency: int) -> float:
    """Seconds for a run whose ``foreach`` step has ``n`` items (each item is one attempt, recorded)."""
    flow = flownb.Flow("dask_scale", db=":memory:", executor=executor, max_concurrency=concurrency)

    @flow.step
    def items() -> list[int]:
        return list(range(n))

    @flow.step(foreach="items")
    def work(item: int) -> int:
        return burn(item, loops)

    t0 = time.perf_counter()
    run = flow.run().wait().raise_for_status()
    wall = time.perf_counter() - t0
    assert len(run.outputs["work"]) == n
    return wall


def dask_wall(client: Any, n: int, loops: int) -> float:
    t0 = time.perf_counter()
    futures = client.map(burn, range(n), loops=loops, pure=False)
    client.gather(futures)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of steps (foreach items)")
    parser.add_argument("--ms", type=float, default=50.0, help="CPU milliseconds per step")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="flownb max_concurrency (items in flight)")
    parser.add_argument("--skip-local", action="store_true", help="skip the local-threads baseline")
    args = parser.parse_args()
    n, ms, reps = args.n, args.ms, args.repeat
    print(f"{n} steps x {ms:g} ms of pure Python, {reps} repetition(s), {os.cpu_count()} CPUs, "
          f"flownb max_concurrency={args.concurrency}", flush=True)

    loops = calibrate(ms)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster, set_as_default=False)
    try:
        # warm up: workers import flownb and this module once, outside the measurements
        flownb_wall(WORKERS * 2, 1, client, args.concurrency)
        dask_wall(client, WORKERS * 2, 1)

        local: list[float] = []
        on_dask: list[float] = []
        plain: list[float] = []
        for rep in range(1, reps + 1):
            if not args.skip_local:
                local.append(flownb_wall(n, loops, None, args.concurrency))
                print(f"  [{rep}/{reps}] flownb local threads {local[-1]:.2f}s", flush=True)
            on_dask.append(flownb_wall(n, loops, client, args.concurrency))
            print(f"  [{rep}/{reps}] flownb on Dask        {on_dask[-1]:.2f}s", flush=True)
            plain.append(dask_wall(client, n, loops))
            print(f"  [{rep}/{reps}] dask client.map       {plain[-1]:.2f}s", flush=True)
    finally:
        client.close()
        cluster.close()

    med = statistics.median
    ideal = n * ms / 1000 / WORKERS
    print()
    print(f"{'':38} {'median s':>9} {'per step ms':>12}")
    if local:
        print(f"{'flownb, local threads':38} {med(local):9.2f} {med(local) / n * 1000:12.2f}")
    print(f"{'flownb, Dask (2 worker processes)':38} {med(on_dask):9.2f} {med(on_dask) / n * 1000:12.2f}")
    print(f"{'dask client.map (same cluster)':38} {med(plain):9.2f} {med(plain) / n * 1000:12.2f}")
    print(f"{'ideal on 2 workers (n*ms/2)':38} {ideal:9.2f} {ideal / n * 1000:12.2f}")
    print()
    if local:
        print(f"speedup, Dask over local threads:            {med(local) / med(on_dask):.2f}x")
    print(f"flownb on Dask / client.map:                  {med(on_dask) / med(plain):.3f}")
    print(f"flownb overhead per step over client.map:     {(med(on_dask) - med(plain)) / n * 1000:.2f} ms wall")


if __name__ == "__main__":
    main()
