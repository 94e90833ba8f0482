"""Control any run from anywhere: attach, events, cancel, pause and resume across processes;
the run context, the trigger, named runs, and what a failed attempt was given."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flownb

DEADLINE = 60

PIPELINE = textwrap.dedent(
    """
    import pathlib, time
    import flownb

    flow = flownb.Flow("steerable")
    gate = pathlib.Path(__file__).with_name("go")

    @flow.step
    def first():
        while not gate.exists():   # holds the run until the test says go
            time.sleep(0.05)
        return 1

    @flow.step
    def second(first):
        pathlib.Path(__file__).with_name("second-ran").write_text("yes")
        return first + 1
    """
)


def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {DEADLINE}s")
        time.sleep(0.1)


@pytest.fixture
def cli_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """A run owned by a `flownb run` process, held in its first step until the file `go` exists."""
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    db = tmp_path / "store.duckdb"
    env = {**os.environ, "FLOWNB_DB": str(db)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flownb.cli", "run", "pipeline.py:flow"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    yield proc, db, tmp_path
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def the_run(db: Path) -> str:
    until(lambda: not flownb.history(str(db)).empty, "the CLI's run to appear in the store")
    return str(flownb.history(str(db)).iloc[0]["run_id"])


def test_pause_and_resume_a_run_another_process_owns(cli_run: tuple[subprocess.Popen[str], Path, Path]) -> None:
    proc, db, folder = cli_run
    run = flownb.attach(the_run(db), str(db))
    until(lambda: run.step_status.get("first") == "running", "the first step to start")
    run.pause()
    until(lambda: run.status == "paused", "the run to show paused")
    (folder / "go").write_text("go")  # first finishes; second must not start while paused
    until(lambda: run.step_status.get("first") == "succeeded", "the first step to finish")
    time.sleep(3)  # more than the owner's control poll: a started second step would have shown by now
    assert run.step_status.get("second") is None or run.step_status["second"] == "pending"
    assert not (folder / "second-ran").exists()
    run.resume()
    assert run.wait(DEADLINE).status == "succeeded"
    assert run.outputs == {"first": 1, "second": 2}
    assert proc.wait(DEADLINE) == 0
    statuses = [e.payload.get("status") for e in run.events() if e.event == "run_status"]
    assert "paused" in statuses and statuses.index("paused") < len(statuses) - 1


def test_cancel_a_cli_run_with_flownb_cancel(cli_run: tuple[subprocess.Popen[str], Path, Path]) -> None:
    proc, db, folder = cli_run
    run_id = the_run(db)
    run = flownb.attach(run_id, str(db))
    until(lambda: run.step_status.get("first") == "running", "the first step to start")
    done = subprocess.run(
        [sys.executable, "-m", "flownb.cli", "cancel", run_id[:6], "--db", str(db)],
        capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"cancelling run {run_id}" in done.stdout
    assert run.wait(DEADLINE).status == "cancelled"
    assert proc.wait(DEADLINE) == 1  # the CLI's run did not succeed
    assert not (folder / "second-ran").exists()


def test_follow_the_events_of_a_run_owned_elsewhere_to_its_end(
    cli_run: tuple[subprocess.Popen[str], Path, Path],
) -> None:
    proc, db, folder = cli_run
    run = flownb.attach(the_run(db), str(db))
    seen = []
    for e in run.events(follow=True, poll=0.05):
        seen.append((e.event, e.step))
        if e.event == "run_status" and e.payload.get("status") == "running":
            (folder / "go").write_text("go")
    assert seen[0] == ("run_started", None) and seen[-1] == ("run_ended", None)
    assert ("step_finished", "second") in seen
    assert [e.seq for e in run.events()] == sorted(e.seq for e in run.events())
    assert proc.wait(DEADLINE) == 0


def test_the_run_context_and_the_trigger_in_templates_and_sql(tmp_path: Path) -> None:
    db = str(tmp_path / "ctx.duckdb")
    flow = flownb.Flow("context", db=db)

    @flow.step
    def info(run: dict[str, Any]) -> dict[str, Any]:
        return run

    flow.step(name="said", kind="shell", command="echo '{{ run.flow }} {{ run.trigger }} {{ run.started_at }}'")
    run = flow.run({"n": 1}, trigger="api").wait(DEADLINE)
    assert run.status == "succeeded", run.error
    ctx = run.outputs["info"]
    assert (ctx["id"], ctx["flow"], ctx["trigger"], ctx["params"]) == (run.id, "context", "api", {"n": 1})
    assert run.outputs["said"]["stdout"].strip() == f"context api {ctx['started_at']}"
    row = flownb.sql("SELECT trigger, started_at FROM runs WHERE run_id = ?", db, [run.id]).iloc[0]
    assert row["trigger"] == "api"
    assert abs(row["started_at"].timestamp() - _parse(ctx["started_at"])) < 1
    with pytest.raises(flownb.FlownbError, match="trigger must be one of"):
        flow.run(trigger="cron")


def test_a_named_run_starts_once(tmp_path: Path) -> None:
    flow = flownb.Flow("named", db=str(tmp_path / "named.duckdb"))
    flow.step(lambda: 1, name="one")
    assert flow.run(run_id="nightly-2026-11-28").wait(DEADLINE).id == "nightly-2026-11-28"
    with pytest.raises(flownb.RunExists, match="nightly-2026-11-28"):
        flow.run(run_id="nightly-2026-11-28")


def test_a_failed_attempt_records_what_it_was_given_with_secrets_scrubbed(tmp_path: Path) -> None:
    db = str(tmp_path / "snap.duckdb")
    flow = flownb.Flow("snapshot", db=db)

    @flow.step
    def rows() -> list[int]:
        return list(range(5000))

    @flow.step
    def total(rows: list[int], params: dict[str, Any]) -> int:
        raise ValueError("bad rows")

    run = flow.run({"api_token": "s3cr3t-t0ken-value", "limit": 3}).wait(DEADLINE)
    assert run.status == "failed"
    failed = run.steps.set_index("step").loc["total"]
    import json

    inputs = json.loads(failed["inputs"])
    assert inputs["rows"].startswith("[0, 1, 2") and inputs["rows"].endswith("chars]")  # cut to size
    assert "'limit': 3" in inputs["params"] and "s3cr3t-t0ken-value" not in inputs["params"]


def _parse(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
