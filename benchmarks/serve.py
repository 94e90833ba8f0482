"""The REST API's throughput and latency, and how late schedules fire.

Each server runs in a process of its own (the client's GIL is not the server's):
``flownb serve`` on a one-step flow, and a plain Starlette app on uvicorn whose
handlers return the same JSON bytes without doing anything (the floor: HTTP,
routing, auth-less). Clients are httpx's async client with 1 and 8 requests in
flight. Printed, per route and concurrency: requests a second, the ratio to the
plain handler, p50 and p99 latency.

- ``GET /api/runs/{id}`` of a finished run (its JSON is kept: a finished run never
  changes) and of a run waiting at a gate (read from the store each time);
- ``POST /api/flows/{flow}/runs`` starting a 1-step run (202 at once);
- the delay from a per-second schedule's fire time to its run's ``started_at``
  (target: under 100 ms p99).

    python benchmarks/serve.py [--requests 2000] [--starts 300] [--schedule-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

import flownb
from flownb.store.base import forget_store, open_store

TOKEN = "bench-token"
FLOWS = """
import flownb

bench = flownb.Flow("bench")

@bench.step
def one(params):
    return 1

gated = flownb.Flow("gated")
gated.approval("gate", message="ok?")
"""
PLAIN = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

run_json = open(sys.argv[2], "rb").read()
started = b'{"run_id":"0123456789ab","status":"pending"}'

async def get_run(request):
    return Response(run_json, media_type="application/json")

async def start(request):
    await request.body()
    return Response(started, status_code=202, media_type="application/json")

app = Starlette(routes=[Route("/api/runs/{run_id}", get_run), Route("/api/flows/{flow}/runs", start, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server at {url} exited {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"the server at {url} did not start")


def start_flownb(scratch: Path, db: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "FLOWNB_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flownb.cli", "serve", f"{scratch / 'flows.py'}:bench", f"{scratch / 'flows.py'}:gated",
         "--db", db, "--port", str(port), "--rate", "1000000", "--burst", "1000000"],
        cwd=scratch, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return proc, url


def start_plain(scratch: Path, run_json: bytes) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (scratch / "run.json").write_bytes(run_json)
    (scratch / "plain.py").write_text(PLAIN)
    proc = subprocess.Popen([sys.executable, str(scratch / "plain.py"), str(port), str(scratch / "run.json")])
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def load(url: str, method: str, path: str, n: int, concurrency: int, body: bytes | None = None) -> list[float]:
    """Latencies of ``n`` requests, ``concurrency`` in flight (each on its own keep-alive connection)."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                r = await client.request(method, path, content=body)
                latencies.append(time.perf_counter() - t)
                if r.status_code not in (200, 202):
                    raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")

        for _ in range(min(20, n)):  # warm the connections
            await client.request(method, path, content=body)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.append(-(time.perf_counter() - t0))  # the wall time, marked negative
    return latencies


def summary(latencies: list[float]) -> tuple[float, float, float]:
    wall = -min(latencies)
    lat = sorted(x for x in latencies if x >= 0)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return len(lat) / wall, statistics.median(lat) * 1000, p99 * 1000


def row(label: str, mine: tuple[float, float, float], plain: tuple[float, float, float]) -> None:
    print(f"{label:<44} {mine[0]:>8.0f} {plain[0]:>8.0f} {mine[0] / plain[0]:>7.2f} "
          f"{mine[1]:>7.2f} {mine[2]:>7.2f} {plain[2]:>7.2f}")  # fmt: skip


def schedule_delays(scratch: Path, db: str, seconds: int) -> list[float]:
    """Milliseconds from each fire time of a per-second schedule to its run's started_at."""
    store = open_store(db)
    flownb.Flow("bench", db=db).schedule("* * * * * *", name="tick")
    forget_store(store)
    proc, _ = start_flownb(scratch, db)
    ready = time.time()  # fires before the server listened are late by its start, not by the loop
    time.sleep(seconds)
    stop(proc)
    store = open_store(db)
    try:
        df = flownb.sql(
            "SELECT run_id, epoch_us(started_at) AS us FROM runs WHERE run_id LIKE 'tick-%' ORDER BY run_id", db=store
        )
    finally:
        forget_store(store)
    delays = []
    for run_id, us in df.itertuples(index=False):
        fire = datetime.strptime(run_id.rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if fire.timestamp() > ready:
            delays.append(us / 1000 - fire.timestamp() * 1000)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per measurement")
    parser.add_argument("--starts", type=int, default=300, help="runs started per measurement")
    parser.add_argument("--schedule-seconds", type=int, default=30, help="how long the schedule fires")
    parser.add_argument("--schedule-only", action="store_true", help="measure the schedule's delay only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "flows.py").write_text(textwrap.dedent(FLOWS))
        db = str(scratch / "bench.duckdb")
        if not args.schedule_only:
            http_figures(scratch, db, args)
        raw = schedule_delays(scratch, str(scratch / "schedule.duckdb"), args.schedule_seconds)
        print("\nschedule fire -> run started, ms, in fire order:", " ".join(f"{d:.0f}" for d in raw))
        delays = sorted(raw)
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        print(f"  {len(delays)} fires after the server listened: median {statistics.median(delays):.1f} ms, "
              f"p99 {p99:.1f} ms, max {delays[-1]:.1f} ms (target: p99 under 100 ms)")  # fmt: skip


def http_figures(scratch: Path, db: str, args: argparse.Namespace) -> None:
    if True:
        server, url = start_flownb(scratch, db)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
        done = api.post("/api/flows/bench/runs", json={}).json()["run_id"]
        while api.get(f"/api/runs/{done}").json()["status"] != "succeeded":
            time.sleep(0.01)
        waiting = api.post("/api/flows/gated/runs", json={}).json()["run_id"]
        while api.get(f"/api/runs/{waiting}").json()["status"] != "waiting":
            time.sleep(0.01)
        run_json = api.get(f"/api/runs/{done}").content
        plain, plain_url = start_plain(scratch, run_json)
        body = json.dumps({"params": {}}).encode()
        print(f"{'':<44} {'req/s':>8} {'plain':>8} {'ratio':>7} {'p50 ms':>7} {'p99 ms':>7} {'plain99':>7}")
        for concurrency in (1, 8):
            for label, path, n in (
                (f"GET /api/runs/{{id}}, finished, {concurrency} client(s)", f"/api/runs/{done}", args.requests),
                (f"GET /api/runs/{{id}}, waiting, {concurrency} client(s)", f"/api/runs/{waiting}", args.requests // 4),
            ):
                mine = summary(asyncio.run(load(url, "GET", path, n, concurrency)))
                base = summary(asyncio.run(load(plain_url, "GET", path, n, concurrency)))
                row(label, mine, base)
            path = "/api/flows/bench/runs"
            mine = summary(asyncio.run(load(url, "POST", path, args.starts, concurrency, body)))
            base = summary(asyncio.run(load(plain_url, "POST", path, args.starts, concurrency, body)))
            row(f"POST {path}, {concurrency} client(s)", mine, base)
        api.post(f"/api/runs/{waiting}/cancel")
        api.close()
        stop(server)
        stop(plain)


if __name__ == "__main__":
    main()
