"""The shell kind against real bash subprocesses."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import flownb
from flownb.errors import FlowDefinitionError
from tests.steps.helpers import attempts, recorded_inputs, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has stopped running all the same
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_success_output_log_and_recorded_inputs(flow: flownb.Flow, tmp_path: Path) -> None:
    flow.shell("hello", "echo out {{ params.who }}; echo err >&2; pwd; echo $GREETING",
               env={"GREETING": "hi {{ params.who }}", "API_TOKEN": "tok"}, cwd=str(tmp_path))
    run = flow.run(params={"who": "ada"}).wait(60)
    assert run.status == "succeeded", run.error
    out = run.outputs["hello"]
    assert out == {"returncode": 0, "stdout": f"out ada\n{tmp_path}\nhi ada\n", "stderr": "err\n"}
    [row] = attempts(run, "hello")
    assert row["status"] == "succeeded" and row["kind"] == "shell"
    assert row["stdout"] == out["stdout"] and row["stderr"] == "err\n"
    [inputs] = recorded_inputs(run, "hello")
    assert inputs["command"].startswith('echo out "${FLOWNB_ARG_1}";')  # the script that ran
    assert inputs["args"] == {"FLOWNB_ARG_1": "ada"}  # and the values it read
    assert inputs["env"] == {"GREETING": "hi ada", "API_TOKEN": "[redacted]"}
    assert inputs["cwd"] == str(tmp_path)


@pytest.mark.parametrize("evil", ["x; touch {p}", "$(touch {p})", "`touch {p}`", "' ; touch {p} ; '", "a\ntouch {p}"])
def test_template_values_stay_literal(flow: flownb.Flow, tmp_path: Path, evil: str) -> None:
    planted = tmp_path / "pwned"
    value = evil.format(p=planted)
    flow.shell("echo", "printf '%s' {{ params.value }}")
    run = flow.run(params={"value": value}).wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["echo"]["stdout"] == value
    assert not planted.exists()


def test_output_of_an_upstream_step_is_quoted_too(flow: flownb.Flow, tmp_path: Path) -> None:
    planted = tmp_path / "pwned"

    @flow.step
    def name() -> str:
        return f"bob; touch {planted}"

    flow.shell("greet", "echo hello {{ name }}")
    run = flow.run().wait(60)
    assert run.outputs["greet"]["stdout"] == f"hello bob; touch {planted}\n"
    assert not planted.exists()


def test_nonzero_exit_fails_with_stderr_tail(flow: flownb.Flow) -> None:
    flow.shell("bad", "echo working; for i in $(seq 1 30); do echo line$i >&2; done; exit 3")
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "bad")
    assert row["status"] == "failed" and row["error_type"] == "ShellError"
    assert "exited with status 3" in row["error"]
    assert "line30" in row["error"] and "line1\n" not in row["error"]  # the tail, not all of it
    assert "exited with status 3" in str(run.error)


def test_first_failing_command_fails_the_script(flow: flownb.Flow) -> None:
    flow.shell("pipefail", "false | cat; echo not reached")
    run = flow.run().wait(60)
    assert run.status == "failed"
    assert "not reached" not in (attempts(run, "pipefail")[0]["stdout"] or "")


def test_retries_then_succeeds(flow: flownb.Flow, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    flow.shell("flaky", f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ]", retries=2, retry_delay=0)
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert [r["status"] for r in attempts(run, "flaky")] == ["failed", "succeeded"]


def test_output_streams_into_the_log_while_running(flow: flownb.Flow, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    gate = threading.Event()

    @flow.step
    def opener() -> int:
        gate.wait(30)
        return 1

    # the script only finishes after the test saw its first line in the live log
    flow.shell("talker", f"echo first; while [ ! -f {flag} ]; do sleep 0.01; done; echo second",
               after="opener", timeout=60)
    run = flow.run()
    seen: list[tuple[str, str]] = []

    def listener(ex: object, step: str, stream: str, text: str) -> None:
        seen.append((step, text))
        if step == "talker" and "first" in text:
            flag.touch()

    run.execution.log_listeners.append(listener)
    gate.set()
    run.wait(60)
    assert run.status == "succeeded", run.error
    assert run.outputs["talker"]["stdout"] == "first\nsecond\n"
    assert seen[0] == ("talker", "first\n")


def test_timeout_kills_the_whole_process_group(flow: flownb.Flow, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    flow.shell("slow", f"sleep 300 & echo $! > {pids}; sleep 300", timeout=1)
    run = flow.run().wait(60)
    assert run.status == "failed"
    [row] = attempts(run, "slow")
    assert row["error_type"] == "StepTimeout"
    child = int(wait_until(pids.read_text, "the pid file"))
    wait_until(lambda: not _alive(child), "the background child to be killed")


def test_cancel_kills_the_script(flow: flownb.Flow, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    flow.shell("slow", f"sleep 300 & echo $! > {pids}; sleep 300")
    run = flow.run()
    child = int(wait_until(lambda: pids.exists() and pids.read_text().strip(), "the script to start"))
    run.cancel()
    run.wait(60)
    assert run.status == "cancelled"
    assert attempts(run, "slow")[-1]["status"] == "cancelled"
    wait_until(lambda: not _alive(child), "the background child to be killed")


def test_background_children_do_not_outlive_a_successful_step(flow: flownb.Flow, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    flow.shell("leaky", f"sleep 300 & echo $! > {pids}; echo done")
    run = flow.run().wait(60)
    assert run.status == "succeeded"
    wait_until(lambda: not _alive(int(pids.read_text())), "the left-over child to be stopped")


def test_bad_definitions_and_a_missing_cwd(flow: flownb.Flow, tmp_path: Path) -> None:
    with pytest.raises(FlowDefinitionError, match="command"):
        flow.shell("empty", "  ")
    with pytest.raises(FlowDefinitionError, match="env"):
        flow.step(name="e", kind="shell", command="true", env=["A=1"])
    flow.step(name="nowhere", kind="shell", command="true", cwd=str(tmp_path / "missing"), retries=3)
    run = flow.run().wait(60)
    [row] = attempts(run, "nowhere")  # a missing directory is not retried
    assert "is not a directory" in row["error"]
