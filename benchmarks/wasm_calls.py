"""Per-call overhead of a trivial WASM skill (``echo`` on a small JSON input).

Three levels, each the median of several batches, per call:

- ``wasmtime direct``: one shared engine and pre-compiled module; a new store,
  WASI config and instance per call (the floor: what any sandboxed call costs)
- ``flownb guest``: flownb's per-call path without the engine (a fresh
  epoch-interruptible engine, deserialising the cached artifact, stdin file,
  memory limit), called in a loop in this thread
- ``flownb step``: a ``foreach`` wasm step through the whole engine (records in
  an in-memory store), against the same foreach with a no-op Python step

Usage: ``python benchmarks/wasm_calls.py [--calls 200] [--batches 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import flownb  # noqa: E402
from flownb.steps import wasm  # noqa: E402

INPUT = b'{"a": [1, 2, 3], "b": "hello"}'


def direct(calls: int) -> float:
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    module = wasmtime.Module(engine, wasm.skill_path("echo").read_text())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    with tempfile.NamedTemporaryFile() as f:
        f.write(INPUT)
        f.flush()
        t0 = time.perf_counter()
        for _ in range(calls):
            out = bytearray()
            cfg = wasmtime.WasiConfig()
            cfg.stdin_file = f.name
            cfg.stdout_custom = out.extend
            store = wasmtime.Store(engine)
            store.set_epoch_deadline(1)
            store.set_wasi(cfg)
            linker.instantiate(store, module).exports(store)["_start"](store)
        return (time.perf_counter() - t0) / calls


def guest(calls: int) -> float:
    path = wasm.skill_path("echo").resolve()
    stop = threading.Event()
    t0 = time.perf_counter()
    for _ in range(calls):
        engine = wasmtime.Engine(wasm._config())
        out = wasm._run(engine, path, stdin=INPUT, dirs=[], memory_mb=64, on_stderr=lambda b: None, stopped=stop)
        assert out.strip() == INPUT
    return (time.perf_counter() - t0) / calls


def step(calls: int, kind: str) -> float:
    flow = flownb.Flow(f"wasm_{uuid.uuid4().hex[:6]}", db=":memory:")
    if kind == "wasm":
        flow.wasm("call", "echo", input="{{ item }}", foreach="params.xs", concurrency=1)
    else:

        @flow.step(foreach="params.xs", concurrency=1)
        def call(item: object) -> object:
            return item

    t0 = time.perf_counter()
    run = flow.run(params={"xs": [{"a": [1, 2, 3], "b": "hello"}] * calls}).wait(600)
    assert run.status == "succeeded", run.error
    return (time.perf_counter() - t0) / calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--batches", type=int, default=5)
    args = ap.parse_args()
    direct(10), guest(10), step(10, "wasm"), step(10, "python")  # warm up: compile cache, imports
    res: dict[str, list[float]] = {"direct": [], "guest": [], "step": [], "python": []}
    for _ in range(args.batches):
        res["direct"].append(direct(args.calls))
        res["guest"].append(guest(args.calls))
        res["step"].append(step(args.calls, "wasm"))
        res["python"].append(step(args.calls, "python"))
    med = {k: statistics.median(v) * 1e6 for k, v in res.items()}
    print(f"echo skill, {args.calls} calls x {args.batches} batches (median us per call)")
    print(f"  wasmtime direct (shared engine)   {med['direct']:8.0f} us")
    print(f"  flownb guest (per-call engine)    {med['guest']:8.0f} us   {med['guest'] / med['direct']:.2f}x direct")
    print(f"  flownb wasm step (foreach item)   {med['step']:8.0f} us   {med['step'] / med['direct']:.2f}x direct")
    print(f"  flownb python no-op step (same)   {med['python']:8.0f} us   (the engine's own per-item cost)")
    print(f"  wasm step minus engine cost       {med['step'] - med['python']:8.0f} us")


if __name__ == "__main__":
    main()
