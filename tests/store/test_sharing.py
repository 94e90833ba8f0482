"""Sharing the store (DESIGN §3): processes take turns with the file; a waiting writer is next.

Real processes, real files: tests/store/share_flow.py. The only deadline is the
store's own wait for its turn (``FLOWNB_LOCK_TIMEOUT``), generous next to the
turns of a few hundred milliseconds the writers get.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import flownb
from flownb.store.duckdb_store import DuckDBStore

SCRIPT = Path(__file__).with_name("share_flow.py")
ROOT = Path(__file__).parents[2]


def _start(*args: str, timeout: str = "20") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWNB_LOCK_TIMEOUT": timeout}
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, text=True, env=env)


def _answer(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_four_writers_and_a_reader_querying_every_fifth_of_a_second_all_get_their_turns(tmp_path: Path) -> None:
    db, stop = str(tmp_path / "shared.duckdb"), tmp_path / "stop"
    reader = _start("read", db, str(stop))
    assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
    writers = [_start("write", db, "6") for _ in range(4)]
    try:
        answers = [_answer(w) for w in writers]
    finally:
        stop.write_text("stop")
    read = _answer(reader)
    assert [a["succeeded"] for a in answers] == [6, 6, 6, 6], [a["errors"] for a in answers]
    assert read["errors"] == [] and int(read["queries"]) > 0  # type: ignore[call-overload]
    df = flownb.sql("SELECT status, count(*) AS n FROM runs GROUP BY status", db=db)
    assert dict(zip(df["status"], df["n"], strict=True)) == {"succeeded": 24}


@pytest.mark.parametrize(("run_id", "doing"), [("r0123", "running a flow (run r0123)"), (None, "querying it")])
def test_store_locked_names_the_holder_and_what_it_is_doing(tmp_path: Path, run_id: str | None, doing: str) -> None:
    db = str(tmp_path / "held.duckdb")
    holder = _start("hold", db, "60", *([run_id] if run_id else []))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(flownb.StoreLocked) as info:
            DuckDBStore(db, lock_timeout=0.5)
        error = info.value
        assert error.pid == holder.pid and error.doing == doing
        assert f"locked by process {holder.pid}" in str(error) and doing in str(error)
        assert "\n" not in str(error)
        assert isinstance(error, flownb.StoreError) and error.cause == "locked"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()
