"""Live view benchmark: picture render times, and what the view costs a run.

    python benchmarks/live_view.py [--repeat 5]

1. Render time of the picture for 50, 200 and 1,000 steps: the first picture
   of a flow (DOT, Graphviz layout, cutting the SVG into a template) and each
   later frame (filling in colors and text), medians.
2. The overhead of the live view on a 1,000-step run: the same flow run with
   and without a view following it (a real LiveView: state fold, painter
   thread, ipywidgets models without a frontend), alternating, in one process;
   the ratio of median wall times.
"""

from __future__ import annotations

import argparse
import random
import statistics
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


def make_flow(n: int, name: str, db: str, seed: int = 7) -> flownb.Flow:
    """A layered random DAG: each step reads up to 3 earlier steps among the last 40."""
    rng = random.Random(seed)
    flow = flownb.Flow(name, db=db, max_concurrency=16)
    for i in range(n):
        parents = sorted({f"s{rng.randrange(max(0, i - 40), i)}" for _ in range(rng.randint(0, 3))}) if i else []

        def fn(**kwargs: Any) -> int:
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
    tracker = Tracker(lambda ex, name, value: None)
    views: list[LiveView] = []

    def follow(ex: Any) -> None:
        tracker.on_start(ex)
        view = LiveView(tracker.states[ex.run_id], ex.graph, lambda *a: None, painter=painter)
        tracker.subscribe(ex.run_id, view.poke)
        views.append(view)

    def once(with_view: bool) -> float:
        if with_view:
            rt.on_start.append(follow)
        try:
            t0 = time.perf_counter()
            run = flow.run()
            run.wait()
            elapsed = time.perf_counter() - t0
        finally:
            if with_view:
                rt.on_start.remove(follow)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        layout_for(make_flow(3, "warm", db).graph())  # the WASM module compiles once per process
        bench_render(args.repeat, db)
        bench_overhead(args.repeat, db)


if __name__ == "__main__":
    main()
