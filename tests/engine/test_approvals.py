"""Approval gates in the engine: waiting runs, decisions from anywhere."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import flownb
from flownb.engine.run import Run


def wait_for_gate(run: Run, step: str) -> None:
    for _ in range(600):
        if step in run.pending_approvals:
            return
        time.sleep(0.02)
    raise AssertionError(f"{step} never waited; status {run.status}")


def gated_flow(db: str, name: str = "gated") -> flownb.Flow:
    flow = flownb.Flow(name, db=db)

    @flow.step
    def rows() -> list[int]:
        return [1, 2, 3]

    flow.approval("publish_ok", message="Publish {{ rows | length }} rows?")

    @flow.step(after=["publish_ok"])
    def publish(rows: list[int]) -> int:
        return sum(rows)

    return flow


def test_approval_makes_the_run_wait_and_approve_continues_it(db: str) -> None:
    run = gated_flow(db).run()
    wait_for_gate(run, "publish_ok")
    assert run.status == "waiting"
    pending = flownb.sql("SELECT step, message, decision FROM approvals WHERE run_id = ?", db=db, params=[run.id])
    assert list(pending["message"]) == ["Publish 3 rows?"] and pending["decision"].isna().all()
    run.approve("publish_ok", comment="looks right", by="ana")
    assert run.wait(60).status == "succeeded"
    assert run.outputs["publish"] == 6
    row = flownb.sql("SELECT * FROM approvals WHERE run_id = ?", db=db, params=[run.id]).iloc[0]
    assert (row["decision"], row["decided_by"], row["comment"], row["via"]) == ("approved", "ana", "looks right", "api")


def test_reject_fails_the_step_with_approval_rejected(db: str) -> None:
    run = gated_flow(db).run()
    wait_for_gate(run, "publish_ok")
    run.reject("publish_ok", comment="numbers are off", by="bo")
    run.wait(60)
    assert run.status == "failed"
    assert isinstance(run.error, flownb.ApprovalRejected)
    assert "numbers are off" in str(run.error) and "bo" in str(run.error)
    assert run.step_status["publish"] == "cancelled"


def test_deciding_a_step_that_is_not_waiting_is_a_clear_error(db: str) -> None:
    run = gated_flow(db).run()
    wait_for_gate(run, "publish_ok")
    with pytest.raises(flownb.FlownbError, match=r"'rows'.*not waiting.*publish_ok"):
        run.approve("rows")
    run.approve("publish_ok")
    run.wait(60)


def test_approval_timeout_fails_the_gate() -> None:
    flow = flownb.Flow("gate_timeout", db=":memory:")
    flow.approval("gate", message="ok?", approval_timeout=0.2)
    run = flow.run().wait(60)
    assert isinstance(run.error, flownb.StepTimeout) and "no decision" in str(run.error)


def test_a_decision_from_another_process_continues_the_run(db: str) -> None:
    run = gated_flow(db).run()
    wait_for_gate(run, "publish_ok")
    code = (
        "import sys; from flownb.store import open_store, Decision; from flownb.store.base import utcnow;"
        f"open_store({db!r}).post_decision(Decision({run.id!r}, 'publish_ok', 'approved', 'cli-user', 'ok', 'cli', utcnow()))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert run.wait(120).status == "succeeded"
    row = flownb.sql("SELECT decided_by, via FROM approvals WHERE run_id = ?", db=db, params=[run.id]).iloc[0]
    assert (row["decided_by"], row["via"]) == ("cli-user", "cli")


def test_several_gates_in_one_run() -> None:
    flow = flownb.Flow("two_gates", db=":memory:")
    flow.approval("legal", message="legal ok?")
    flow.approval("finance", message="finance ok?")

    @flow.step(after=["legal", "finance"])
    def ship() -> str:
        return "shipped"

    run = flow.run()
    wait_for_gate(run, "legal")
    wait_for_gate(run, "finance")
    run.approve("legal")
    assert run.status == "waiting"
    run.approve("finance")
    assert run.wait(60).outputs["ship"] == "shipped"
