"""Processes sharing one store, for tests/store/test_sharing.py.

``write DB RUNS``: RUNS runs of a 10-step chain, one after another; prints one JSON
line: how many succeeded, and the errors of the others.
``read DB STOP``: a dashboard: queries ``runs`` every 0.2 s until the file STOP exists;
prints ``reading`` after its first query and, at the end, one JSON line: how many
queries it made and their errors.
``hold DB SECONDS [RUN]``: holds the file for SECONDS in one operation (owning RUN, a
live run, when given); prints ``holding`` once it has the file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import flownb
from flownb.store.base import Event
from flownb.store.duckdb_store import DuckDBStore


def write(db: str, runs: int) -> None:
    flow = flownb.Flow("shared", db=db)
    for i in range(10):
        flow.step(lambda: None, name=f"s{i}", after=(f"s{i - 1}",) if i else ())
    ok, errors = 0, []
    for _ in range(runs):
        run = flow.run().wait(600)
        if run.status == "succeeded":
            ok += 1
        else:
            errors.append(str(run.error))
    print(json.dumps({"succeeded": ok, "errors": errors}), flush=True)


def read(db: str, stop: Path) -> None:
    queries, errors = 0, []
    while not stop.exists():
        try:
            flownb.sql("SELECT status, count(*) FROM runs GROUP BY status", db=db)
        except flownb.FlownbError as exc:
            errors.append(str(exc))
        queries += 1
        if queries == 1:
            print("reading", flush=True)  # the file is the reader's first: the writers come after
        time.sleep(0.2)
    print(json.dumps({"queries": queries, "errors": errors}), flush=True)


def hold(db: str, seconds: float, run_id: str | None) -> None:
    store = DuckDBStore(db)
    if run_id:
        store.submit([Event(run_id, 1, "run_started", None, {"flow": "held", "status": "running"})]).result(60)
    store._call(lambda con: (print("holding", flush=True), time.sleep(seconds)))


if __name__ == "__main__":
    mode, db = sys.argv[1], sys.argv[2]
    if mode == "write":
        write(db, int(sys.argv[3]))
    elif mode == "read":
        read(db, Path(sys.argv[3]))
    else:
        hold(db, float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
