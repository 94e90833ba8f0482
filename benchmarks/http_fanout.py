"""HTTP fan-out: 1,000 requests at concurrency 100, flownb steps vs a bare httpx client.

A small asyncio keep-alive server runs in its own process (``tests/servers.py
fast``) so that it neither limits nor shares the GIL with the client side.
Every round runs the bare client and flownb in the same process, against the
same server; the ratio is flownb's throughput over the bare client's
(target: >= 0.8). Three variants:

- ``steps``: 1,000 separate http steps, ``Flow(max_concurrency=100)``
- ``foreach``: one http step with ``foreach`` over 1,000 items, ``concurrency=100``
- ``steps+duckdb``: the first variant recording to a DuckDB file (sync durability)

Usage: ``python benchmarks/http_fanout.py [--requests 1000] [--concurrency 100] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import flownb  # noqa: E402


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "servers.py"), "fast"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the benchmark server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


class Bare:
    """A bare httpx client on its own loop, kept across rounds like flownb's pooled client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=128)

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(limits=limits, trust_env=False)

        self.client = self.loop.run_until_complete(make())

    def round(self, base: str, n: int, concurrency: int) -> float:
        return self.loop.run_until_complete(self._round(base, n, concurrency))

    async def _round(self, base: str, n: int, concurrency: int) -> float:
        limit = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with limit:
                r = await self.client.get(f"{base}/item/{i}")
                r.raise_for_status()
                r.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def flownb_steps(base: str, n: int, concurrency: int, db: str) -> tuple[float, float]:
    flow = flownb.Flow(f"fanout_{uuid.uuid4().hex[:6]}", db=db, max_concurrency=concurrency)
    t0 = time.perf_counter()
    for i in range(n):
        flow.http(f"get_{i}", f"{base}/item/{i}")
    defined = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = flow.run().wait(600)
    elapsed = time.perf_counter() - t0
    assert run.status == "succeeded", run.error
    return elapsed, defined


def flownb_foreach(base: str, n: int, concurrency: int, db: str) -> float:
    flow = flownb.Flow(f"fanout_{uuid.uuid4().hex[:6]}", db=db, max_concurrency=concurrency)
    flow.http("get", base + "/item/{{ item }}", foreach="params.ids", concurrency=concurrency)
    t0 = time.perf_counter()
    run = flow.run(params={"ids": list(range(n))}).wait(600)
    elapsed = time.perf_counter() - t0
    assert run.status == "succeeded", run.error
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n, c = args.requests, args.concurrency
    server, base = start_server()
    results: dict[str, list[float]] = {"bare": [], "steps": [], "foreach": [], "steps+duckdb": [], "define": []}
    client = Bare()
    try:
        # warm up both sides: imports, and a pool of open connections to the server
        client.round(base, n, c)
        flownb_foreach(base, n, c, ":memory:")
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                # each side re-opens its pool just before it is timed: idle connections
                # expire after 5 s (httpx's default), and opening 100 at once costs
                # seconds on a busy VM; the timed part is steady-state throughput
                client.round(base, c, c)
                results["bare"].append(client.round(base, n, c))
                flownb_foreach(base, c, c, ":memory:")
                elapsed, defined = flownb_steps(base, n, c, ":memory:")
                results["steps"].append(elapsed)
                results["define"].append(defined)
                flownb_foreach(base, c, c, ":memory:")
                results["foreach"].append(flownb_foreach(base, n, c, ":memory:"))
                flownb_foreach(base, c, c, ":memory:")
                results["steps+duckdb"].append(flownb_steps(base, n, c, str(Path(tmp) / f"b{r}.duckdb"))[0])
    finally:
        client.close()
        server.terminate()
        server.wait()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{n} GET requests, concurrency {c}, {args.rounds} rounds (medians)")
    print(f"  {'bare httpx.AsyncClient':28s} {med['bare'] * 1000:8.1f} ms  {n / med['bare']:8.0f} req/s")
    for key in ("steps", "foreach", "steps+duckdb"):
        ratio = med["bare"] / med[key]
        per_step = (med[key] - med["bare"]) / n * 1e6
        print(f"  flownb {key:21s} {med[key] * 1000:8.1f} ms  {n / med[key]:8.0f} req/s  "
              f"ratio {ratio:5.2f}  (+{per_step:6.0f} us/step over bare)")  # fmt: skip
    print(f"  defining {n} steps: {med['define'] * 1000:.1f} ms (not included above)")


if __name__ == "__main__":
    main()
