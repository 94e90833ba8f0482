"""Outputs no codec can store are volatile: the step succeeds, resume runs it again when needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

import flownb


def gen_flow(db: str, calls: list[str], *, fail: bool) -> flownb.Flow:
    flow = flownb.Flow("volatile", db=db)

    @flow.step
    def gen() -> Iterator[int]:
        calls.append("gen")
        return (i * i for i in range(4))

    @flow.step
    def plain() -> int:
        calls.append("plain")
        return 7

    @flow.step
    def use(gen: Iterator[int], plain: int) -> int:
        calls.append("use")
        if fail:
            raise RuntimeError("use is broken")
        return sum(gen) + plain

    return flow


def test_a_generator_output_is_volatile_and_its_dependent_gets_it(db: str) -> None:
    calls: list[str] = []
    run = gen_flow(db, calls, fail=False).run().wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["use"] == 0 + 1 + 4 + 9 + 7
    out = flownb.sql(
        "SELECT step, codec, size_bytes, hash, reason FROM outputs WHERE run_id = ? ORDER BY step", db=db, params=[run.id]
    )
    rows = out.set_index("step")
    assert rows.loc["gen", "codec"] == "volatile"
    assert rows.loc["gen", "reason"] == "TypeError: cannot pickle 'generator' object"
    assert rows.loc["plain", "codec"] == "json" and pd.isna(rows.loc["plain", "reason"])
    steps = flownb.sql("SELECT step, status FROM steps WHERE run_id = ?", db=db, params=[run.id])
    assert set(steps["status"]) == {"succeeded"}


def test_resume_runs_a_step_again_when_its_volatile_output_is_still_needed(db: str) -> None:
    calls: list[str] = []
    first = gen_flow(db, calls, fail=True).run().wait(60)
    assert first.status == "failed"
    assert sorted(calls) == ["gen", "plain", "use"]
    calls.clear()
    # a fresh Flow object on the same file: nothing in memory survives but the store
    again = gen_flow(db, calls, fail=False).resume(first.id).wait(60)
    assert again.status == "succeeded", again.error
    assert sorted(calls) == ["gen", "use"]  # plain was stored: restored, never run again
    assert again.outputs["use"] == 21
    attempts = flownb.sql("SELECT step, count(*) AS n FROM steps WHERE run_id = ? GROUP BY step", db=db, params=[first.id])
    assert attempts.set_index("step")["n"].to_dict() == {"gen": 2, "plain": 1, "use": 2}


def test_a_volatile_output_nobody_still_needs_is_not_run_again(db: str) -> None:
    calls: list[str] = []

    def make(fail: bool) -> flownb.Flow:
        flow = flownb.Flow("unneeded", db=db)

        @flow.step
        def lock() -> Any:
            calls.append("lock")
            return threading.Lock()

        @flow.step
        def uses_lock(lock: Any) -> int:
            calls.append("uses_lock")
            return 1

        @flow.step
        def last(uses_lock: int) -> int:
            calls.append("last")
            if fail:
                raise RuntimeError("not yet")
            return uses_lock + 1

        return flow

    first = make(fail=True).run().wait(60)
    assert first.status == "failed"
    calls.clear()
    again = make(fail=False).resume(first.id).wait(60)
    assert again.status == "succeeded", again.error
    assert calls == ["last"]  # uses_lock was restored, so the lock is needed by nobody
    assert again.outputs["lock"] is None


def test_volatile_inputs_of_a_step_that_runs_again_run_again_too(db: str) -> None:
    calls: list[str] = []

    def make(fail: bool) -> flownb.Flow:
        flow = flownb.Flow("chain", db=db)

        @flow.step
        def numbers() -> Iterator[int]:
            calls.append("numbers")
            return (n for n in range(3))

        @flow.step
        def doubled(numbers: Iterator[int]) -> Iterator[int]:
            calls.append("doubled")
            return (2 * n for n in numbers)

        @flow.step
        def total(doubled: Iterator[int]) -> int:
            calls.append("total")
            if fail:
                raise RuntimeError("not yet")
            return sum(doubled)

        return flow

    assert make(fail=True).run().wait(60).status == "failed"
    first_id = flownb.history(db=db)["run_id"][0]
    calls.clear()
    again = make(fail=False).resume(first_id).wait(60)
    assert again.status == "succeeded", again.error
    assert calls == ["numbers", "doubled", "total"]
    assert again.outputs["total"] == 6


def test_one_volatile_name_of_a_cell_leaves_the_others_stored(db: str) -> None:
    """A notebook cell step has several named outputs, each encoded on its own."""
    calls: list[str] = []

    def make(fail: bool) -> flownb.Flow:
        flow = flownb.Flow("cell", db=db)

        def cell() -> dict[str, Any]:
            calls.append("cell")
            return {"rows": [1, 2, 3], "it": (n for n in [1]), "square": lambda x: x * x}

        flow.step(cell, name="cell", output_names=("rows", "it", "square"))

        @flow.step
        def after(cell: dict[str, Any]) -> int:
            calls.append("after")
            if fail:
                raise RuntimeError("not yet")
            return cell["square"](len(cell["rows"]))

        return flow

    first = make(fail=True).run().wait(60)
    assert first.status == "failed"
    out = flownb.sql("SELECT name, codec FROM outputs WHERE run_id = ? AND step = 'cell'", db=db, params=[first.id])
    assert out.set_index("name")["codec"].to_dict() == {"rows": "json", "it": "volatile", "square": "cloudpickle"}
    calls.clear()
    again = make(fail=False).resume(first.id).wait(60)
    assert again.status == "succeeded", again.error
    assert calls == ["cell", "after"]  # after needs the cell, whose iterator was not stored
    assert again.outputs["after"] == 9


def test_a_volatile_output_never_answers_a_cache_lookup(db: str) -> None:
    calls: list[str] = []
    flow = flownb.Flow("cached", db=db)

    @flow.step(cache=True)
    def source() -> Iterator[int]:
        calls.append("source")
        return (n for n in [1, 2])

    @flow.step(cache=True)
    def consumer(source: Iterator[int]) -> int:
        calls.append("consumer")
        return sum(source)

    for _ in range(2):
        assert flow.run().wait(60).status == "succeeded"
    assert calls == ["source", "consumer"] * 2
    hashes = flownb.sql("SELECT hash FROM outputs WHERE step = 'source'", db=db)["hash"]
    assert hashes.nunique() == 2


def test_a_lambda_output_restores_in_a_fresh_process(db: str, tmp_path: Path) -> None:
    """Issue 12 #6: a top-level lambda failed its step; now it is stored by value."""
    script = textwrap.dedent(
        f"""
        import sys
        import flownb

        flow = flownb.Flow("lambda", db={db!r})
        flow.step(lambda: (lambda x: x ** 2), name="square")

        @flow.step
        def use(square):
            if sys.argv[1] == "fail":
                raise RuntimeError("first time")
            return square(12)

        if sys.argv[1] == "fail":
            print(flow.run().wait(60).id)
        else:
            run = flow.resume(sys.argv[2]).wait(60)
            assert run.status == "succeeded", run.error
            print("use =", run.outputs["use"])
        """
    )
    path = tmp_path / "flow.py"
    path.write_text(script)
    first = subprocess.run([sys.executable, str(path), "fail"], capture_output=True, text=True, timeout=120, check=True)
    run_id = first.stdout.split()[-1]
    again = subprocess.run(
        [sys.executable, str(path), "resume", run_id], capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "use = 144" in again.stdout
    codec = flownb.sql("SELECT codec FROM outputs WHERE run_id = ? AND step = 'square'", db=db, params=[run_id])
    assert list(codec["codec"]) == ["cloudpickle"]
