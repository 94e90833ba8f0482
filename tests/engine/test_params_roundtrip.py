"""Text a run records that JSON cannot hold is escaped, never fatal (issue 14, #5).

A step printing ``'\\ud800'`` (a lone surrogate) failed its run: its log could not
be written to the store.
"""

from __future__ import annotations

import flownb


def test_a_step_printing_a_lone_surrogate_does_not_fail_its_run(db: str) -> None:
    flow = flownb.Flow("surrogate", db=db)

    @flow.step
    def shout() -> int:
        print("bad \ud800 text")
        return 1

    @flow.step
    def after(shout: int) -> int:
        raise ValueError("worse \udfff error")

    run = flow.run().wait(60)
    assert run.status == "failed"  # after's own error, recorded, not a write failure
    steps = flownb.sql("SELECT step, status, stdout, error FROM steps WHERE run_id = ?", db=db, params=[run.id])
    rows = steps.set_index("step")
    assert rows.loc["shout", "status"] == "succeeded"
    assert rows.loc["shout", "stdout"] == "bad \\ud800 text\n"  # escaped, never fatal
    assert rows.loc["after", "error"] == "worse \\udfff error"
    runs = flownb.sql("SELECT status FROM runs WHERE run_id = ?", db=db, params=[run.id])
    assert list(runs["status"]) == ["failed"]
