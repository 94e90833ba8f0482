"""One owner per run (DESIGN §3 "One owner"): leases between real processes.

Each test runs flows in subprocesses (tests/engine/lease_flow.py), counts the
executions of each step in a side-effect file, and decides when a blocking step
ends by creating a file. Nothing here asserts how long something took: each check
is an ordering or a count, sampled over a window several lease lifetimes long.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import flownb
from flownb.store.base import forget_store, open_store
from flownb.store.duckdb_store import DuckDBStore

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("lease_flow.py")
ROOT = Path(__file__).parents[2]
DEADLINE = 120
TTL = 2.0  # the short lease of these tests: a "long step" lasts several of them


class World:
    def __init__(self, tmp: Path) -> None:
        self.db = str(tmp / "owned.duckdb")
        self.side = tmp / "side.txt"
        self.go = tmp / "go"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        full = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWNB_LEASE_TTL": str(TTL), **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), args[0], self.db, str(self.side), str(self.go), *args[1:]],
            stdout=subprocess.PIPE, text=True, env=full,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def starts(self) -> Counter[str]:
        text = self.side.read_text() if self.side.exists() else ""
        return Counter(line.split()[1] for line in text.splitlines())

    def wait_started(self, step: str, times: int = 1) -> None:
        wait_until(lambda: self.starts()[step] >= times, f"{step} to start {times} time(s)")

    def status(self, run_id: str) -> tuple[str, int]:
        df = flownb.sql("SELECT status, pid FROM runs WHERE run_id = ?", db=self.db, params=[run_id])
        return str(df["status"][0]), int(df["pid"][0])

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with_signal(proc, signal.SIGCONT)
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.stop()
    forget_store(open_store(w.db))


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def with_signal(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has ended already
        os.kill(proc.pid, sig)


def line(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    return proc.stdout.readline().split(maxsplit=1)


def result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def resume_here(world: World, run_id: str, flow_name: str = "owned") -> BaseException:
    """A resume from this (the test's) process: it must be refused."""
    from tests.engine.lease_flow import chain

    flow = chain(flow_name, world.db, world.side, world.go, ["s1", "s2", "s3", "s4", "s5"], "s3")
    with pytest.raises(flownb.RunActive) as info:
        flow.resume(run_id)
    return info.value


def test_two_concurrent_resumes_one_proceeds_and_no_committed_step_runs_twice(world: World) -> None:
    first = world.start("run")
    run_id = line(first)[1].strip()
    world.wait_started("s3")  # s1 and s2 are committed; s3 blocks
    first.kill()
    first.wait()

    # both resume at once while s3 still blocks: the winner holds the run until the test lets it go
    resumers = [world.start("resume", run_id) for _ in range(2)]
    answers = {p.pid: line(p) for p in resumers}
    assert sorted(a[0] for a in answers.values()) == ["active", "claimed"], answers
    winner = next(p for p in resumers if answers[p.pid][0] == "claimed")
    loser = next(p for p in resumers if p is not winner)
    assert f"process {winner.pid}" in answers[loser.pid][1]  # RunActive names the owner
    loser.communicate(timeout=DEADLINE)
    assert loser.returncode == 0
    world.wait_started("s3", times=2)
    world.go.write_text("go")
    assert result(winner)["status"] == "succeeded"

    starts = world.starts()
    assert starts["s1"] == 1 and starts["s2"] == 1, starts  # committed before the kill: never again
    assert starts["s3"] == 2 and starts["s4"] == 1 and starts["s5"] == 1, starts
    df = flownb.sql(
        "SELECT step, count(*) AS n FROM steps WHERE run_id = ? AND status = 'succeeded' GROUP BY step",
        db=world.db, params=[run_id],
    )  # fmt: skip
    assert dict(zip(df["step"], df["n"], strict=True)) == {f"s{i}": 1 for i in range(1, 6)}


def test_a_live_run_in_a_long_step_is_never_resumable_nor_shown_interrupted(world: World) -> None:
    owner = world.start("run", "--block", "s2")
    run_id = line(owner)[1].strip()
    world.wait_started("s2")
    _sample_owned(world, run_id, owner.pid)  # the first owner, in a step many leases long

    owner.kill()  # a resumed run: its pid is no longer the one its run_started recorded
    owner.wait()
    second = world.start("resume", run_id, "--block", "s2")
    assert line(second)[0] == "claimed"
    world.wait_started("s2", times=2)
    _sample_owned(world, run_id, second.pid, cli=True)

    world.go.write_text("go")
    assert result(second)["status"] == "succeeded"
    assert world.starts()["s1"] == 1
    assert world.status(run_id)[0] == "succeeded"


def _sample_owned(world: World, run_id: str, pid: int, *, cli: bool = False) -> None:
    """Over four lease lifetimes: shown running, owned by ``pid``, and refused to a resume
    here; with ``cli``, also read by other processes (``flownb sql`` opens the store)."""
    until = time.monotonic() + 4 * TTL
    samples = 0
    while time.monotonic() < until or samples < 3:
        assert world.status(run_id) == ("running", pid)
        error = resume_here(world, run_id)
        assert isinstance(error, flownb.RunActive) and error.pid == pid and str(pid) in str(error)
        if cli:
            out = subprocess.run(
                [sys.executable, "-c", "import sys; from flownb.cli import main; sys.exit(main())", "sql", "--json",
                 "--db", world.db,
                 f"SELECT status, pid FROM runs WHERE run_id = '{run_id}'"],
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=DEADLINE,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout) == [{"status": "running", "pid": pid}]
        samples += 1
        time.sleep(0.3)


def test_late_records_of_an_older_epoch_are_refused(world: World) -> None:
    """An owner on another node that goes silent past its lease is taken over; when it
    wakes up, nothing it records lands, and the step the new owner ran is not run again."""
    old = world.start("run", "--block", "s2", env={"FLOWNB_NODE": "node-a"})
    run_id = line(old)[1].strip()
    world.wait_started("s2")
    _freeze_without_the_file(world, old)

    world.go.write_text("go")
    new = world.start("resume", run_id, "--block", "s2", "--retry-active", env={"FLOWNB_NODE": "node-b"})
    assert line(new)[0] == "claimed"
    assert result(new)["status"] == "succeeded"

    with_signal(old, signal.SIGCONT)  # s2 ends there too, late: its success must not land
    late = result(old)
    assert late["status"] != "succeeded"
    starts = world.starts()
    assert starts["s1"] == 1 and starts["s2"] == 2 and starts["s3"] == 1, starts
    df = flownb.sql(
        "SELECT step, attempt, status FROM steps WHERE run_id = ? ORDER BY step, attempt", db=world.db, params=[run_id]
    )
    rows = list(zip(df["step"], df["attempt"], df["status"], strict=True))
    assert [r for r in rows if r[0] == "s2" and r[2] == "succeeded"] == [("s2", 2, "succeeded")], rows
    assert world.status(run_id) == ("succeeded", new.pid)


def _freeze_without_the_file(world: World, proc: subprocess.Popen[str]) -> None:
    """SIGSTOP ``proc`` at a moment it does not hold the store file (else nobody could take over).

    A probe that gets no turn within a second means it was stopped during a turn (or at the
    door, waiting for one): let it go on, and stop it again at a random later moment."""
    deadline = time.monotonic() + DEADLINE
    last = ""
    while True:
        assert time.monotonic() < deadline, f"the owner never let go of the file: {last}"
        with_signal(proc, signal.SIGSTOP)
        try:
            probe = DuckDBStore(world.db, lock_timeout=1.0)
        except flownb.StoreLocked as exc:
            last = str(exc)
            with_signal(proc, signal.SIGCONT)
            # let it finish that turn (a renewal, every 0.2 s here), and stop it at another moment
            time.sleep(random.uniform(0.2, 0.8))
            continue
        probe.close()
        return


def test_resuming_a_parent_resumes_its_child_run(world: World) -> None:
    first = world.start("parent")
    parent_id = line(first)[1].strip()
    world.wait_started("c2")  # the child's c1 is committed; c2 blocks
    first.kill()
    first.wait()
    children = flownb.sql("SELECT run_id FROM runs WHERE parent_run_id = ?", db=world.db, params=[parent_id])
    assert len(children) == 1
    child_id = str(children["run_id"][0])

    world.go.write_text("go")
    second = world.start("resume-parent", parent_id)
    assert line(second)[0] == "claimed"
    assert result(second)["status"] == "succeeded"

    starts = world.starts()
    assert starts["a"] == 1 and starts["c1"] == 1 and starts["c2"] == 2 and starts["c3"] == 1, starts
    runs = flownb.sql("SELECT run_id, status, parent_run_id FROM runs ORDER BY started_at", db=world.db)
    assert list(runs["run_id"]) == [parent_id, child_id]  # the same child, resumed; no new one
    assert list(runs["status"]) == ["succeeded", "succeeded"]
