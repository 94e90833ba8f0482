"""The DuckDB store: tables users query, values kept beside events, locks between processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import flownb
from flownb.store.base import Event, forget_store, open_store
from flownb.store.duckdb_store import DuckDBStore


def test_dataframes_become_real_tables_and_large_values_survive_resume(db: str, tmp_path: Path) -> None:
    flow = flownb.Flow("tables", db=db)
    big = list(range(50_000))  # beyond the inline limit: kept in _values

    @flow.step
    def frame() -> pd.DataFrame:
        return pd.DataFrame({"user_id": [1, 2, 3], "amount": [9.5, 3.0, 1.25]})

    @flow.step
    def numbers() -> list[int]:
        return big

    @flow.step
    def boom(frame: pd.DataFrame, numbers: list[int]) -> None:
        raise RuntimeError("stop here")

    run = flow.run().wait(60)
    out = flownb.sql("SELECT name, codec, table_name FROM outputs WHERE run_id = ? ORDER BY name", db=db, params=[run.id])
    assert list(out["codec"]) == ["arrow:pandas", "json"]
    table = out["table_name"][0]
    total = flownb.sql(f'SELECT sum(amount) AS s FROM "{table}"', db=db)
    assert total["s"][0] == 13.75

    seen: dict[str, object] = {}
    flow.remove("boom")

    @flow.step
    def boom(frame: pd.DataFrame, numbers: list[int]) -> None:  # noqa: F811  (the fixed step)
        seen["frame"], seen["numbers"] = frame, numbers

    assert flow.resume(run.id).wait(60).status == "succeeded"
    pd.testing.assert_frame_equal(seen["frame"], run.outputs["frame"])  # type: ignore[arg-type]
    assert seen["numbers"] == big


def test_every_table_name_of_the_contract_answers_sql(db: str) -> None:
    flow = flownb.Flow("contract", db=db)
    flow.step(lambda: 1, name="one")
    flow.run().wait(60)
    columns = {
        "runs": "run_id, flow, status, params, started_at, ended_at, duration_ms, error, host, pid, notebook, flow_hash, parent_run_id",
        "steps": "run_id, step, attempt, kind, status, level, started_at, ended_at, duration_ms, error_type, error, "
        "traceback, input_hash, output_hash, cached, stdout, stderr, tokens_in, tokens_out, cost_usd",
        "events": "run_id, seq, ts, step, event, payload",
        "approvals": "run_id, step, requested_at, decided_at, decision, decided_by, comment, via",
        "outputs": "run_id, step, name, codec, size_bytes, hash",
    }
    for table, cols in columns.items():
        flownb.sql(f"SELECT {cols} FROM {table}", db=db)
    history = flownb.history(db=db)
    assert list(history["status"]) == ["succeeded"]


def test_bad_sql_is_a_flownb_error_naming_the_store(db: str) -> None:
    flownb.Flow("x", db=db).step(lambda: 1, name="one")
    with pytest.raises(flownb.FlownbError, match="store .*store.duckdb"):
        flownb.sql("SELECT nope FROM steps", db=db)


def test_the_connection_is_released_when_idle(db: str) -> None:
    store = open_store(db)
    assert isinstance(store, DuckDBStore)
    store.flush()
    done = threading.Event()
    for _ in range(200):
        if store._file.con is None:  # released after idle_release
            done.set()
            break
        threading.Event().wait(0.05)
    assert done.is_set()
    duckdb.connect(db).close()  # another connection may now open the file


def test_writes_run_on_one_duckdb_thread_and_reads_over_history_on_all(db: str) -> None:
    cores = duckdb.connect(":memory:").execute("SELECT current_setting('threads')").fetchone()
    assert cores is not None
    store = open_store(db)
    assert isinstance(store, DuckDBStore)
    store.submit([Event("r1", 1, "run_started", None, {"flow": "f"})]).result(10)

    def threads_of_writes() -> object:
        return store._call(lambda con: con.execute("SELECT current_setting('threads')").fetchone())

    assert threads_of_writes() == (1,)
    assert store.query("SELECT current_setting('threads') AS n")["n"].tolist() == [cores[0]]
    assert threads_of_writes() == (1,)  # and back to one after the read
    with pytest.raises(flownb.FlownbError):
        store.query("SELECT nope")
    assert threads_of_writes() == (1,)  # also after a read that failed


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def _hold(path: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_a_second_process_gets_store_locked_naming_the_pid(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.duckdb")
    holder = _hold(path, 60)
    try:
        with pytest.raises(flownb.StoreLocked, match=rf"locked by process {holder.pid}") as info:
            DuckDBStore(path, lock_timeout=0.5)
        assert info.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]


def test_a_second_process_waits_its_turn(tmp_path: Path) -> None:
    path = str(tmp_path / "turns.duckdb")
    holder = _hold(path, 1.0)
    try:
        store = DuckDBStore(path, lock_timeout=60)  # waits for the holder to let go
        flow = flownb.Flow("turns", db=store)  # type: ignore[arg-type]
        flow.step(lambda: 1, name="one")
        assert flow.run().wait(60).status == "succeeded"
        forget_store(store)
    finally:
        holder.wait(60)
        holder.stdout.close()  # type: ignore[union-attr]
    assert holder.returncode == 0


def _event(run_id: str, seq: int) -> Event:
    return Event(run_id, seq, "run_status", None, {"status": "running"}, time.time())


def _commit_when_idle(store: DuckDBStore, event: Event) -> Future[None]:
    """``commit_now`` once the writer has put the connection down (it does just after
    answering a call)."""
    for _ in range(200):
        done = store.commit_now([event], [])
        if done is not None:
            return done
        time.sleep(0.01)
    raise AssertionError("the writer never went idle")


def test_commit_now_commits_on_the_calling_thread_only_when_the_writer_is_idle(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "now.duckdb"), idle_release=0.3)
    try:
        # a process keeps the file between commits only while it runs a flow (else it lets go
        # after each query): this one owns a live run
        store.submit([Event("live", 1, "run_started", None, {"flow": "f", "status": "running"})]).result(10)
        store.flush()  # the file is open and nothing is queued
        done = _commit_when_idle(store, _event("r1", 1))
        assert done.done() and done.exception() is None
        assert store.query("SELECT count(*) AS n FROM events WHERE run_id = 'r1'")["n"][0] == 1

        busy, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=store._call, args=(lambda con: (busy.set(), release.wait(10)),))
        holder.start()
        assert busy.wait(10)
        try:  # the writer has the connection: wait for it, never overtake it
            assert store.commit_now([_event("r2", 1)], []) is None
        finally:
            release.set()
            holder.join(10)

        # committing at once keeps the file open; idle, it is let go as before
        for seq in range(20):  # 1 s, over three times the idle release
            _commit_when_idle(store, _event("r3", seq))
            time.sleep(0.05)
        assert store.query("SELECT count(*) AS n FROM events WHERE run_id = 'r3'")["n"][0] == 20
        for _ in range(200):
            if store._file.con is None:
                break
            time.sleep(0.05)
        assert store._file.con is None
        assert store.commit_now([_event("r4", 1)], []) is None  # closed: the writer opens it again
    finally:
        store.close()
