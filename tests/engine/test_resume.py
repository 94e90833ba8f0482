"""Resume: committed steps are restored, never re-run; changed code re-runs downstream."""

from __future__ import annotations

from pathlib import Path

import pytest

import flownb


def counting_flow(db: str, log: Path, *, fail: bool, b_version: int = 1) -> flownb.Flow:
    flow = flownb.Flow("resumable", db=db)

    def note(name: str) -> None:
        with log.open("a") as f:
            f.write(name + "\n")

    @flow.step
    def a() -> int:
        note("a")
        return 1

    if b_version == 1:

        @flow.step
        def b(a: int) -> int:
            note("b")
            return a + 1
    else:

        @flow.step
        def b(a: int) -> int:
            note("b2")
            return a + 100

    @flow.step
    def c(b: int) -> int:
        note("c")
        if fail:
            raise RuntimeError("c is broken")
        return b * 10

    return flow


def test_resume_restores_committed_steps_and_runs_the_rest(db: str, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    first = counting_flow(db, log, fail=True).run().wait(60)
    assert first.status == "failed"
    again = counting_flow(db, log, fail=False).resume(first.id).wait(60)
    assert again.id == first.id
    assert again.status == "succeeded", again.error
    assert again.outputs == {"a": 1, "b": 2, "c": 20}
    assert log.read_text().split() == ["a", "b", "c", "c"]
    statuses = flownb.sql("SELECT status FROM runs WHERE run_id = ?", db=db, params=[first.id])
    assert list(statuses["status"]) == ["succeeded"]
    attempts = flownb.sql("SELECT attempt, status FROM steps WHERE run_id = ? AND step = 'c' ORDER BY attempt", db=db, params=[first.id])
    assert list(attempts["status"]) == ["failed", "succeeded"]


def test_changed_code_reruns_the_step_and_everything_downstream(db: str, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    first = counting_flow(db, log, fail=True).run().wait(60)
    again = counting_flow(db, log, fail=False, b_version=2).resume(first.id).wait(60)
    assert again.outputs == {"a": 1, "b": 101, "c": 1010}
    assert log.read_text().split() == ["a", "b", "c", "b2", "c"]


def test_resume_of_an_unknown_run_is_a_clear_error(db: str, tmp_path: Path) -> None:
    flow = counting_flow(db, tmp_path / "log.txt", fail=False)
    flow.run().wait(60)
    with pytest.raises(flownb.RunNotFound, match="no run 'nope'"):
        flow.resume("nope")


def test_resume_accepts_a_unique_prefix(db: str, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    first = counting_flow(db, log, fail=True).run().wait(60)
    again = counting_flow(db, log, fail=False).resume(first.id[:6]).wait(60)
    assert again.id == first.id and again.status == "succeeded"


def test_cache_reuses_an_earlier_output_for_the_same_inputs(db: str, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    flow = flownb.Flow("cached", db=db)

    @flow.step(cache=True)
    def expensive(params: dict[str, int]) -> int:
        with log.open("a") as f:
            f.write("ran\n")
        return params["n"] * 2

    assert flow.run(params={"n": 2}).wait(60).outputs["expensive"] == 4
    second = flow.run(params={"n": 2}).wait(60)
    assert second.outputs["expensive"] == 4
    assert second.steps.iloc[0]["status"] == "cached" and bool(second.steps.iloc[0]["cached"])
    assert flow.run(params={"n": 3}).wait(60).outputs["expensive"] == 6
    assert log.read_text().split() == ["ran", "ran"]


def test_secret_looking_params_are_redacted_and_can_be_given_again_on_resume(db: str) -> None:
    flow = flownb.Flow("secrets", db=db)
    seen: list[str] = []

    @flow.step
    def use(params: dict[str, str]) -> None:
        seen.append(params["api_token"])
        if len(seen) == 1:
            raise RuntimeError("first time fails")

    first = flow.run(params={"api_token": "s3cret", "region": "eu"}).wait(60)
    recorded = flownb.sql("SELECT params FROM runs WHERE run_id = ?", db=db, params=[first.id])["params"][0]
    assert "s3cret" not in recorded and "[redacted]" in recorded and "eu" in recorded
    assert flow.resume(first.id, params={"api_token": "s3cret"}).wait(60).status == "succeeded"
    assert seen == ["s3cret", "s3cret"]


def test_a_fallback_output_is_restored_on_resume(db: str) -> None:
    flow = flownb.Flow("fallback_resume", db=db)
    calls: list[str] = []

    @flow.step(fallback=lambda: "from fallback")
    def primary() -> str:
        calls.append("primary")
        raise ConnectionError("down")

    @flow.step
    def after(primary: str) -> str:
        calls.append("after")
        if calls.count("after") == 1:
            raise RuntimeError("first time fails")
        return primary.upper()

    first = flow.run().wait(60)
    assert first.status == "failed"
    again = flow.resume(first.id).wait(60)
    assert again.outputs["after"] == "FROM FALLBACK"
    assert calls == ["primary", "after", "after"]  # primary succeeded via its fallback: not run again
    out = flownb.sql("SELECT step, name, codec FROM outputs WHERE run_id = ? ORDER BY step", db=db, params=[first.id])
    assert list(out["step"]) == ["after", "primary", "primary.fallback"]
