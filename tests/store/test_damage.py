"""Damage, a full disk, a read-only file and bad paths: one StoreError line, never a success.

DESIGN §3 "Sharing the store": any DuckDB failure reaches the user as one line
naming the file, the cause and what to do; a run whose records could not be
written never ends succeeded; a read-only store can still be read. The full
disk and the read-only file need root (a small tmpfs, a read-only bind mount:
root writes through chmod); without it they are skipped, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flownb
from flownb.store.base import forget_store, open_store

ROOT = Path(__file__).parents[2]
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a small tmpfs or a read-only bind mount needs root"
)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from flownb.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("FLOWNB_DB", None)
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's answer to bad input: exit 2, one line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_file_truncated_mid_run_fails_the_run_and_reads_as_damaged(tmp_path: Path) -> None:
    from flownb.store.duckdb_store import DuckDBStore

    db = str(tmp_path / "cut.duckdb")
    # the file stays open through the run: a cut while DuckDB checkpoints it on letting go
    # is hidden from sizes (the checkpoint writes past the cut); its checksums find that later
    store = DuckDBStore(db, idle_release=120)
    flow = flownb.Flow("cut", db=store)

    def step(i: int) -> object:
        def body() -> list[int]:
            if i == 3:  # another program truncates the file while the run has it open
                with open(db, "r+b") as f:
                    f.truncate(os.path.getsize(db) // 2)
            return list(range(20_000))

        return body

    for i in range(6):
        flow.step(step(i), name=f"s{i}", after=(f"s{i - 1}",) if i else ())
    run = flow.run().wait(120)
    assert run.status == "failed"
    assert isinstance(run.error, flownb.FlownbError) and "damaged" in str(run.error)
    assert "s4" not in run.outputs
    store.close()

    listed = cli("history", "--db", db)  # whatever the file still says, the run did not succeed
    assert "succeeded" not in listed.stdout, listed.stdout
    with open(db, "r+b") as f:  # and cut where DuckDB itself notices
        f.truncate(os.path.getsize(db) // 2)
    line = one_line(cli("history", "--db", db))
    assert line.startswith(f"flownb: store {db}: the file is damaged")
    assert "restore it from a backup" in line


def test_a_file_replaced_mid_run_fails_the_run(tmp_path: Path) -> None:
    """Another file moved over the store's path while the run has it open: whatever its
    size, the records went to a file nobody can open any more."""
    from flownb.store.duckdb_store import DuckDBStore

    db = str(tmp_path / "replaced.duckdb")
    store = DuckDBStore(db, idle_release=120)
    flow = flownb.Flow("replaced", db=store)

    def step(i: int) -> object:
        def body() -> int:
            if i == 2:
                bigger = tmp_path / "other.bin"
                bigger.write_bytes(b"\0" * (os.path.getsize(db) * 2))
                os.replace(bigger, db)
            return i

        return body

    for i in range(5):
        flow.step(step(i), name=f"s{i}", after=(f"s{i - 1}",) if i else ())
    run = flow.run().wait(120)
    assert run.status == "failed"
    assert isinstance(run.error, flownb.FlownbError) and "was removed" in str(run.error), run.error
    assert "s3" not in run.outputs
    store.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@needs_root
def test_a_full_disk_is_reported_as_such_and_the_run_fails(small_disk: Path) -> None:
    db = str(small_disk / "full.duckdb")
    flow = flownb.Flow("full", db=db)
    flow.step(lambda: 1, name="a")
    flow.step(lambda a: os.urandom(40_000_000), name="big")  # 40 MB on a 16 MB disk
    flow.step(lambda big: len(big), name="after")
    try:
        run = flow.run().wait(120)
        assert run.status == "failed"
        text = str(run.error)
        assert "the disk is full" in text and "No space left on device" in text and "free space" in text
        assert "cannot rollback" not in text
        assert "after" not in run.outputs
        df = flownb.sql("SELECT status FROM runs WHERE run_id = ?", db=db, params=[run.id])
        assert list(df["status"]) == ["failed"]
    finally:
        forget_store(open_store(db))


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A store with one run, seen through a read-only bind mount: (the path there, the run id)."""
    src, seen = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    seen.mkdir()
    made = subprocess.run(
        [sys.executable, "-c", "import flownb, sys; f = flownb.Flow('ro', db=sys.argv[1]); "
         "f.step(lambda: 1, name='one'); print(f.run().wait(60).id)", str(src / "s.duckdb")],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    subprocess.run(["mount", "--bind", str(src), str(seen)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(seen)], check=True)
        yield str(seen / "s.duckdb"), made.stdout.strip()
    finally:
        subprocess.run(["umount", "-l", str(seen)], check=False)


@needs_root
def test_a_read_only_store_can_be_read_and_refuses_runs_in_one_line(read_only_store: tuple[str, str]) -> None:
    db, run_id = read_only_store
    listed = cli("history", "--db", db)
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout and "succeeded" in listed.stdout
    counted = cli("sql", "--csv", "--db", db, "SELECT count(*) AS n FROM steps")
    assert counted.returncode == 0 and counted.stdout.split() == ["n", "1"], counted.stderr

    flow = flownb.Flow("ro", db=db)
    flow.step(lambda: 1, name="one")
    try:
        with pytest.raises(flownb.StoreError) as info:
            flow.run()
        assert info.value.cause == "read-only" and "can be read" in str(info.value) and "\n" not in str(info.value)
    finally:
        forget_store(open_store(db))


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("typo/runs.duckdb", "the directory {tmp}/typo does not exist"),
        ("a_file/runs.duckdb", "{tmp}/a_file is not a directory"),
        (".", "that path is a directory, not a store file"),
        ("notes.duckdb", "the file is damaged"),
    ],
)
def test_a_bad_db_path_is_one_line_and_makes_no_directory(tmp_path: Path, where: str, says: str) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "notes.duckdb").write_text("not a store either")
    line = one_line(cli("history", "--db", where, cwd=tmp_path))
    assert line.startswith("flownb: store ") and says.format(tmp=tmp_path.resolve()) in line
    assert [p.name for p in tmp_path.rglob("*") if p.is_dir()] == []  # no directory made, not even .flownb/


def test_a_file_cut_between_turns_fails_the_next_run(tmp_path: Path) -> None:
    """Cut while this process had let go of it (idle between runs): the next turn sees it."""
    from flownb.store.duckdb_store import DuckDBStore

    db = str(tmp_path / "between.duckdb")
    store = DuckDBStore(db, idle_release=0.05)
    flow = flownb.Flow("between", db=store)

    @flow.step
    def big() -> list[int]:
        return list(range(200_000))

    assert flow.run().wait(60).status == "succeeded"
    deadline = time.monotonic() + 30
    while store._file.turns.holding:  # the writer lets go of the file once idle (after its checkpoint)
        assert time.monotonic() < deadline, "the store never let go of its file"
        time.sleep(0.02)
    with open(db, "r+b") as f:
        f.truncate(os.path.getsize(db) // 2)
    run = flow.run().wait(60)
    assert run.status == "failed"
    assert isinstance(run.error, flownb.StoreError) and "shrank" in str(run.error), run.error
    store.close()
