"""The flownb command, run as a subprocess the way cron or CI runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PIPELINE = textwrap.dedent(
    """
    import flownb

    flow = flownb.Flow("pipe")

    @flow.step
    def double(params):
        return params["n"] * 2

    @flow.step
    def kinds(params):
        return {k: type(v).__name__ for k, v in params.items()}

    flow.approval("gate", message="ship {{ double }}?")

    @flow.step(after=["gate"])
    def ship(double):
        print("shipping", double)
        return double
    """
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    return {**os.environ, "FLOWNB_DB": str(tmp_path / "cli.duckdb"), "COLUMNS": "200"}


def flownb(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flownb.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def start_waiting_run(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[str], list[str], str]:
    """Start `flownb run` in the background; return it once it says how to decide its gate."""
    first = subprocess.Popen(
        [sys.executable, "-m", "flownb.cli", "run", "pipeline.py:flow", "--param", "n=1"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert first.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = first.stdout.readline()
        assert line, "the run ended before waiting: " + "".join(lines)
        lines.append(line)
        found = re.search(r"flownb approve (\w+) gate", line)
        if found:
            return first, lines, found.group(1)
    raise AssertionError("the run never waited: " + "".join(lines))


def test_run_with_typed_params_and_approve_all(env: dict[str, str], tmp_path: Path) -> None:
    done = flownb(
        "run", "pipeline.py:flow", "--param", "n=21", "--param", "ratio=0.5", "--param", "on=true",
        "--param", 'tags=["a"]', "--param", "name=x", "--approve", "all", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    out = flownb("sql", "SELECT step, stdout FROM steps WHERE step = 'ship'", "--json", env=env, cwd=tmp_path)
    assert json.loads(out.stdout) == [{"step": "ship", "stdout": "shipping 42\n"}]
    kinds = flownb("sql", "SELECT json_extract_string(payload, '$.outputs[0].value') AS v FROM events WHERE event='step_finished' AND step='kinds'", "--csv",
                   env=env, cwd=tmp_path)  # fmt: skip
    assert json.loads(kinds.stdout.splitlines()[1].strip('"').replace('""', '"')) == {
        "n": "int", "ratio": "float", "on": "bool", "tags": "list", "name": "str",
    }  # fmt: skip


def test_a_second_process_approves_while_the_first_waits(env: dict[str, str], tmp_path: Path) -> None:
    first, lines, command = start_waiting_run(env, tmp_path)
    decided = flownb("approve", command, "gate", "--comment", "go", "--by", "ops", env=env, cwd=tmp_path)
    assert decided.returncode == 0, decided.stderr
    rest, _ = first.communicate(timeout=120)
    first.stdout.close()
    assert first.returncode == 0, "".join(lines) + rest
    row = flownb("sql", "SELECT decision, decided_by, comment, via FROM approvals", "--json", env=env, cwd=tmp_path)
    assert json.loads(row.stdout) == [{"decision": "approved", "decided_by": "ops", "comment": "go", "via": "cli"}]


def test_a_rejected_run_exits_one_and_says_how_to_resume(env: dict[str, str], tmp_path: Path) -> None:
    first, _, run_id = start_waiting_run(env, tmp_path)
    assert flownb("approve", run_id, "gate", "--reject", env=env, cwd=tmp_path).returncode == 0
    rest, _ = first.communicate(timeout=120)
    first.stdout.close()
    assert first.returncode == 1
    assert f"flownb resume {run_id}" in rest
    shown = flownb("show", run_id[:6], env=env, cwd=tmp_path)
    assert "ApprovalRejected" in shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.ipynb"], "no notebook missing.ipynb"),
        (["run", "pipeline.py:nothing"], "defines no Flow named 'nothing'"),
        (["run", "pipeline.txt"], "neither NOTEBOOK.ipynb nor FILE.py:FLOW"),
        (["run", "pipeline.py:flow", "--param", "oops"], "--param 'oops' is not of the form key=value"),
        (["show", "feedface"], "no run 'feedface'"),
        (["approve", "feedface", "gate"], "no run 'feedface'"),
        (["resume", "feedface"], "no run 'feedface'"),
        (["sql", "SELECT nope FROM runs"], "nope"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_two(env: dict[str, str], tmp_path: Path, args: list[str], message: str) -> None:
    done = flownb(*args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_history_lists_runs(env: dict[str, str], tmp_path: Path) -> None:
    flownb("run", "pipeline.py:flow", "--param", "n=2", "--approve", "gate", env=env, cwd=tmp_path)
    listed = flownb("history", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "pipe" in listed.stdout and "succeeded" in listed.stdout


def test_show_writes_the_run_picture(env: dict[str, str], tmp_path: Path) -> None:
    done = flownb("run", "pipeline.py:flow", "--param", "n=3", "--approve", "all", env=env, cwd=tmp_path)
    run_id = re.search(r"run (\w+) succeeded", done.stdout).group(1)  # type: ignore[union-attr]
    shown = flownb("show", run_id, "--svg", "run.svg", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "double" in shown.stdout and "succeeded" in shown.stdout
    svg = (tmp_path / "run.svg").read_text()
    assert svg.lstrip().startswith("<svg") and "ship" in svg and "succeeded" in svg
