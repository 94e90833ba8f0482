"""Flows for the ownership tests, run in subprocesses: ``run``, ``resume``, ``parent`` and ``resume-parent``.

Every step appends ``start NAME`` to a side-effect file when it begins, so a test
can count executions across processes. The step named by ``--block`` (and the
child's ``c2``) waits until the file ``GO`` exists: the test decides when a step
ends, however long that is.

Printed lines: ``id RUN_ID`` once a run is started; ``claimed RUN_ID`` or
``active MESSAGE`` for a resume; last, one JSON line with the run's status and
error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import flownb


def note(side: Path, name: str) -> None:
    with side.open("a") as f:
        f.write(f"start {name}\n")
        f.flush()


def wait_for(go: Path) -> None:
    while not go.exists():
        time.sleep(0.02)


def chain(name: str, db: str, side: Path, go: Path, steps: list[str], block: str | None) -> flownb.Flow:
    flow = flownb.Flow(name, db=db)
    for i, step in enumerate(steps):

        def body(step: str = step) -> str:
            note(side, step)
            if step == block:
                wait_for(go)
            return step

        body.__flownb_source__ = f"{name}.{step}"  # type: ignore[attr-defined]
        flow.step(body, name=step, after=(steps[i - 1],) if i else (), origin=("test", f"{name}.{step}"))
    return flow


def parent(db: str, side: Path, go: Path) -> flownb.Flow:
    child = chain("child", db, side, go, ["c1", "c2", "c3"], block="c2")
    flow = flownb.Flow("parent", db=db)

    def a() -> int:
        note(side, "a")
        return 1

    def b(sub: dict[str, str]) -> str:
        note(side, "b")
        return ",".join(sorted(sub))

    for fn in (a, b):
        fn.__flownb_source__ = f"parent.{fn.__name__}"  # type: ignore[attr-defined]
    flow.step(a, origin=("test", "parent.a"))
    flow.subflow("sub", child, after=("a",))
    flow.step(b, origin=("test", "parent.b"))
    return flow


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["run", "resume", "parent", "resume-parent"])
    p.add_argument("db")
    p.add_argument("side", type=Path)
    p.add_argument("go", type=Path)
    p.add_argument("run_id", nargs="?")
    p.add_argument("--block", default="s3")
    p.add_argument("--retry-active", action="store_true", help="resume again while the run is active elsewhere")
    args = p.parse_args()
    if args.mode in ("parent", "resume-parent"):
        flow = parent(args.db, args.side, args.go)
    else:
        flow = chain("owned", args.db, args.side, args.go, ["s1", "s2", "s3", "s4", "s5"], args.block)
    if args.mode in ("run", "parent"):
        run = flow.run()
        print("id", run.id, flush=True)
    else:
        while True:
            try:
                run = flow.resume(args.run_id)
            except flownb.RunActive as exc:
                if args.retry_active:
                    time.sleep(0.1)
                    continue
                print("active", exc, flush=True)
                return
            break
        print("claimed", run.id, flush=True)
    run.wait(600)
    print(json.dumps({"status": run.status, "error": str(run.error) if run.error else None}), flush=True)


if __name__ == "__main__":
    main()
