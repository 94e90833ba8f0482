"""A flow for the crash tests, run in a subprocess: ``run``, ``resume`` or ``clean``.

Every step appends ``start NAME`` to a side-effect file when it begins, so the
test can count executions across a SIGKILL and a resume.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import flownb


def build(db: str, side: Path) -> flownb.Flow:
    flow = flownb.Flow("crashy", db=db, max_concurrency=2)

    def note(name: str) -> None:
        with side.open("a") as f:
            f.write(f"start {name}\n")
            f.flush()

    def step(name: str, deps: tuple[str, ...], delay: float) -> None:
        def body(**inputs: int) -> int:
            note(name)
            time.sleep(delay)
            return sum(inputs.values()) + len(name)

        import inspect

        body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(d, inspect.Parameter.KEYWORD_ONLY) for d in deps]
        )
        body.__flownb_source__ = f"{name}{deps}"  # type: ignore[attr-defined]
        flow.step(body, name=name, origin=("test", name))

    step("extract", (), 0.15)
    step("users", ("extract",), 0.15)
    step("orders", ("extract",), 0.25)
    step("items", ("extract",), 0.1)
    step("joined", ("users", "orders"), 0.15)
    step("totals", ("orders", "items"), 0.15)
    step("report", ("joined", "totals"), 0.15)
    step("publish", ("report",), 0.1)
    return flow


def main() -> None:
    mode, db, side = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    flow = build(db, side)
    if mode == "resume":
        run = flow.resume(sys.argv[4])
    else:
        run = flow.run()
        print(run.id, flush=True)
    run.wait(120)
    print(json.dumps({"status": run.status, "outputs": run.outputs}), flush=True)


if __name__ == "__main__":
    main()
