"""Live view benchmark: frames on a fresh kernel, bytes to the browser, --wait, overhead.

    python benchmarks/live_view.py [--repeat 5] [--only render,kernel,bytes,overhead]

1. Render time of the picture for 50, 200 and 1,000 steps: the first picture
   of a flow (DOT, Graphviz layout, cutting the SVG into a template) and the
   static frame (filling in colors and text), medians.
2. A fresh kernel without ``dot`` on PATH (the in-process Graphviz compiles on
   the first picture): one cell loads flownb, defines 10 steps and starts a run
   of about 0.6 s. From the view's frame timeline: the first frame after
   ``%flow run`` returned, frames a second while the run goes on, the longest a
   change waited to be drawn, the final frame after the run's end, when the
   picture arrived. Then ``%flow run --wait``: from the run's end to the cell's
   return. Medians over ``--repeat`` kernels, and the worst.
3. Bytes sent to the browser per update, for runs of 50, 200 and 1,000 steps
   (each sleeping 20 ms, 8 at a time): the comm messages' content during each
   redraw (ipywidgets without a frontend; a Jupyter message adds about 500 bytes
   of envelope to each), per redraw and per step that changed in it, the
   picture's bytes and how often it was sent; beside it what the previous view
   sent a frame (the whole SVG).
4. The overhead of the live view on a 1,000-step run of no-op steps: the same
   flow run with and without a view following it (a real LiveView: state fold,
   painter thread, ipywidgets models without a frontend), alternating, in one
   process; the ratio of median wall times (target: under 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import flownb
from flownb.engine.runtime import runtime
from flownb.notebook.painter import Painter
from flownb.notebook.tracking import Tracker
from flownb.notebook.view import LiveView
from flownb.render.picture import StepDetail, layout_for

STATUSES = ["pending", "running", "succeeded", "failed", "retrying", "waiting", "cached", "skipped"]


def make_flow(n: int, name: str, db: str, seed: int = 7, sleep: float = 0.0, concurrency: int = 16) -> flownb.Flow:
    """A layered random DAG: each step reads up to 3 earlier steps among the last 40 (and sleeps ``sleep``)."""
    rng = random.Random(seed)
    flow = flownb.Flow(name, db=db, max_concurrency=concurrency)
    for i in range(n):
        parents = sorted({f"s{rng.randrange(max(0, i - 40), i)}" for _ in range(rng.randint(0, 3))}) if i else []

        def fn(**kwargs: Any) -> int:
            if sleep:
                time.sleep(sleep)
            return len(kwargs)

        import inspect

        fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in parents]
        )
        flow.step(fn, name=f"s{i}", origin=("bench", name, str(i)))
    return flow


def bench_render(repeat: int, db: str) -> None:
    print("picture render (medians)")
    print(f"{'steps':>6} {'first picture (layout)':>24} {'each later frame':>18} {'svg size':>10}")
    for n in (50, 200, 1000):
        firsts, frames = [], []
        size = 0
        for r in range(repeat):
            graph = make_flow(n, f"render{n}_{r}", db).graph()  # a new shape each time: no layout cache
            t0 = time.perf_counter()
            layout = layout_for(graph)
            firsts.append(time.perf_counter() - t0)
            rng = random.Random(r)
            for _ in range(20):
                details = {
                    s: StepDetail(rng.choice(STATUSES), rng.random() * 5000, rng.randint(0, 3)) for s in graph.specs
                }
                t0 = time.perf_counter()
                svg = layout.fill(details)
                frames.append(time.perf_counter() - t0)
                size = len(svg)
        print(f"{n:>6} {statistics.median(firsts) * 1000:>21.1f} ms {statistics.median(frames) * 1000:>15.2f} ms"
              f" {size / 1024:>7.0f} KB")


def bench_overhead(repeat: int, db: str, n: int = 1000) -> None:
    flow = make_flow(n, "overhead", db)
    rt = runtime()
    painter = Painter()
    tracker = Tracker(lambda run, name, value: None)
    views: list[LiveView] = []

    def once(with_view: bool) -> float:
        # as in a notebook: the session follows the run from its start (state only), and
        # `%flow run` makes the view once the run has started
        stop = rt.watch_starts(tracker.on_start) if with_view else None
        try:
            t0 = time.perf_counter()
            run = flow.run()
            if with_view:
                view = LiveView(tracker.states[run.id], run.graph, lambda *a: None, painter=painter)
                tracker.subscribe(run.id, view.poke)
                view.poke()
                views.append(view)
            run.wait()
            elapsed = time.perf_counter() - t0
        finally:
            if stop is not None:
                stop()
        assert run.status == "succeeded", run.error
        painter.settle(60)
        return elapsed

    once(False)  # warm up: store file, thread pools, the layout of this flow
    once(True)
    plain, viewed = [], []
    for _ in range(repeat):
        plain.append(once(False))
        viewed.append(once(True))
    p, v = statistics.median(plain), statistics.median(viewed)
    print(f"\n{n}-step run, medians of {repeat}: without view {p:.3f} s, with live view {v:.3f} s")
    print(f"overhead ratio {v / p:.3f} ({(v / p - 1) * 100:+.1f}%), {painter.paints} paints in all")
    final = views[-1]
    assert "succeeded" in final.header.value, final.header.value


# -- a fresh kernel without dot ---------------------------------------------------------------

KERNEL_STEPS = [
    ("s0", "_t = __import__('time')\n_t.sleep(0.1)\ns0 = 0"),
    *((f"p{i}", f"_t = __import__('time')\n_t.sleep({0.1 * (i % 4 + 1):.1f})\np{i} = s0 + {i}") for i in range(1, 9)),
    ("total", "total = " + " + ".join(f"p{i}" for i in range(1, 9))),
]


def bench_kernel(repeat: int) -> None:
    """First frame, cadence, staleness and the final frame on fresh kernels without dot; --wait latency."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the kernel helper lives with the tests
    from tests.notebook.conftest import Kernel

    rows: list[dict[str, float]] = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, FLOWNB_DB=str(Path(tmp) / "store.duckdb"))
            env["PATH"] = os.pathsep.join(
                d for d in env.get("PATH", "").split(os.pathsep) if d and not os.path.exists(os.path.join(d, "dot"))
            )
            env.pop("JPY_SESSION_NAME", None)
            kernel = Kernel(env, Path(tmp))
            try:
                rows.append(_kernel_once(kernel))
            finally:
                kernel.kill()
    print(f"\nfresh kernel without dot, {repeat} kernels (one cell: %load_ext, 10 steps, %flow run; ~0.6 s run)")
    labels = {
        "first": "first frame after %flow run returned", "fps": "frames a second while running",
        "stale": "longest a change waited to be drawn", "final": "final frame after the run's end",
        "picture": "picture arrived after return", "wait": "%flow run --wait: return after the run's end",
    }  # fmt: skip
    for key, label in labels.items():
        values = [r[key] for r in rows]
        unit, scale = ("/s", 1.0) if key == "fps" else ("ms", 1000.0)
        print(f"  {label:<46} median {statistics.median(values) * scale:7.1f} {unit}"
              f"   worst {(min(values) if key == 'fps' else max(values)) * scale:7.1f} {unit}")  # fmt: skip


def _kernel_once(kernel: Any) -> dict[str, float]:
    define = "".join(f"get_ipython().run_cell_magic('step', {n!r}, {b!r})\n" for n, b in KERNEL_STEPS)
    kernel.execute(f"%load_ext flownb\n{define}import time as _time\nv = %flow run\n_returned = _time.monotonic()")
    kernel.wait_for("v.run.done and v.view.final_drawn.is_set()")
    got = kernel.value("{'returned': _returned, 'frames': [list(f) for f in v.view.frames], "
                       "'ended': v.view.state.run.ended_at, 'started': v.view.state.run.started_at, "
                       "'picture': v.view.picture_at}")  # fmt: skip
    frames, returned = got["frames"], got["returned"]
    after = [f for f in frames if f[0] > returned]
    running = [f for f in frames if not f[5]]
    span = max(running[-1][0] - returned, 1e-3)
    out = {
        "first": after[0][0] - returned if after else float("nan"),
        "fps": len([f for f in running if f[0] > returned]) / span,
        "stale": max(f[0] - f[1] for f in frames),
        "final": frames[-1][2] - got["ended"],
        "picture": (got["picture"] or float("nan")) - returned,
    }
    kernel.execute("import time as _time\nr = %flow run --wait\n_back = _time.time()")
    session = "get_ipython().magics_manager.registry['FlowMagics'].session"
    ended = kernel.value(f"{session}.tracker.states[r.id].run.ended_at")
    out["wait"] = kernel.value("_back") - ended
    return out


# -- bytes to the browser ------------------------------------------------------------------------


def bench_bytes(db: str) -> None:
    """Comm content bytes per redraw for runs of 50, 200 and 1,000 steps."""
    import comm

    sent: list[tuple[bool, int]] = []  # (carries the picture, content bytes)
    original = comm.DummyComm.publish_msg

    def counting(self: Any, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                 **keys: Any) -> None:  # fmt: skip
        picture = isinstance(data, dict) and bool((data.get("state") or {}).get("svg"))
        sent.append((picture, len(json.dumps(data, default=str))))
        original(self, msg_type, data, metadata, buffers, **keys)

    comm.DummyComm.publish_msg = counting  # type: ignore[method-assign]
    print("\nbytes sent to the browser (comm content; a Jupyter message adds ~500 bytes of envelope)")
    print(f"{'steps':>6} {'updates':>8} {'bytes an update (steps changed)':>38} {'a step':>8} {'picture':>16}"
          f" {'old: a frame':>13}")  # fmt: skip
    try:
        for n in (50, 200, 1000):
            flow = make_flow(n, f"bytes{n}", db, sleep=0.02, concurrency=8)
            old = len(layout_for(flow.graph()).fill({}))  # laid out before: the redraws measured are updates
            updates, final = _redraw_bytes(flow, sent)
            pictures = [b for pic, b in sent if pic]
            med = statistics.median(b for b, _ in updates)
            steps = statistics.median(c for _, c in updates)
            per_step = sum(b for b, _ in updates) / max(1, sum(c for _, c in updates))
            most = max(b for b, _ in updates)
            print(f"{n:>6} {len(updates):>8} {med:>6.0f} B median ({steps:.0f} steps), {most:>6} max"
                  f" {per_step:>8.0f} B {statistics.mean(pictures) / 1024:>9.1f} KB x{len(pictures)}"
                  f" {old / 1024:>10.1f} KB   final redraw {final / 1024:.1f} KB")
            sent.clear()
    finally:
        comm.DummyComm.publish_msg = original  # type: ignore[method-assign]


def _redraw_bytes(flow: flownb.Flow, sent: list[tuple[bool, int]]) -> tuple[list[tuple[int, int]], int]:
    """(bytes, steps changed) of each status update (a redraw that changed a step, with no picture
    and not the final one), and the bytes of the final redraw (summary table and saved snapshot)."""
    rt = runtime()
    painter = Painter()
    tracker = Tracker(lambda run, name, value: None)
    per_paint: list[tuple[int, int, bool]] = []
    final: list[int] = []

    def follow(run: flownb.Run) -> None:
        tracker.on_start(run)
        view = LiveView(tracker.states[run.id], run.graph, lambda *a: None, painter=painter)
        view.picture._on_message(None, {"kind": "hello"}, None)  # what a browser showing it says first
        paint = view.paint
        seen: dict[str, Any] = dict(view.picture._current)

        def measured() -> None:
            start, was_final = len(sent), view.final_drawn.is_set()
            paint()
            current = dict(view.picture._current)
            changed = sum(1 for k, v in current.items() if seen.get(k) != v)
            seen.update(current)
            mine = sent[start:]
            if view.final_drawn.is_set() and not was_final:
                final.append(sum(b for _, b in mine))
            else:
                per_paint.append((sum(b for _, b in mine), changed, any(pic for pic, _ in mine)))

        view.paint = measured  # type: ignore[method-assign]
        tracker.subscribe(run.id, view.poke)

    stop = rt.watch_starts(follow)
    try:
        run = flow.run()
        run.wait()
    finally:
        stop()
    painter.settle(60)
    assert run.status == "succeeded", run.error
    return [(b, c) for b, c, pic in per_paint if not pic and c], sum(final)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="render,kernel,bytes,overhead", help="comma-separated parts to run")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        if "kernel" in only:
            bench_kernel(args.repeat)  # first: the fresh kernels must not wait for this process's compile
        layout_for(make_flow(3, "warm", db).graph())  # the WASM module compiles once per process
        if "render" in only:
            bench_render(args.repeat, db)
        if "bytes" in only:
            bench_bytes(db)
        if "overhead" in only:
            bench_overhead(args.repeat, db)


if __name__ == "__main__":
    main()
