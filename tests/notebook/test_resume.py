"""A kernel killed mid-run: a new kernel resumes, and committed steps are not run again."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def definitions(tmp: Path) -> list[str]:
    flag = tmp / "go"
    return [
        f"%%step first\nwith open({str(tmp / 'first.log')!r}, 'a') as f:\n    f.write('ran\\n')\nfirst = 41",
        f"%%step second\nimport pathlib, time\nwith open({str(tmp / 'second.log')!r}, 'a') as f:\n"
        "    f.write('ran\\n')\n"
        f"while not pathlib.Path({str(flag)!r}).exists():\n    time.sleep(0.05)\nsecond = first + 1",
        "%step gate --kind approval --message 'ship {{ second }}?'",
    ]


def test_resume_after_a_killed_kernel_restores_committed_steps(start_kernel, tmp_path: Path) -> None:
    k1 = start_kernel()
    for cell in definitions(tmp_path):
        k1.execute(cell)
    k1.execute("v = %flow run")
    run_id = k1.value("v.run.id")
    k1.wait_for("v.run.step_status['first'] == 'succeeded' and v.run.step_status['second'] == 'running'")
    k1.kill()  # mid-run: 'second' is running, 'first' is committed

    (tmp_path / "go").write_text("go")
    k2 = start_kernel()
    for cell in definitions(tmp_path):
        k2.execute(cell)
    assert k2.value(f"__import__('flownb').sql(\"SELECT status FROM runs WHERE run_id = '{run_id}'\").status[0]") == (
        "interrupted"
    )
    k2.execute("r = %flow resume")
    assert k2.value("r.run.id") == run_id
    # the approval gate shows its buttons again in the new kernel
    k2.wait_for("r.run.pending_approvals == ['gate'] and r.view.painter.settle() and bool(r.view._cards.get('gate'))")
    assert k2.value("r.view._cards['gate'].approve.disabled") is False
    k2.click(k2.value("r.view._cards['gate'].approve.model_id"))
    k2.wait_for("r.run.done")
    assert k2.value("[r.run.status, first, second]") == ["succeeded", 41, 42]
    assert (tmp_path / "first.log").read_text() == "ran\n"  # committed: never executed again
    assert (tmp_path / "second.log").read_text() == "ran\nran\n"  # was running: at least once
