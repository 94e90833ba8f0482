"""Steps on a real Dask cluster: worker processes, failures, dead workers, cancel.

One LocalCluster of two single-threaded worker processes serves the module;
the scheduler's ``allowed-failures`` is 0, as on the cluster ``executor="dask"``
starts, so a worker that dies fails its attempt at once.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flownb
from flownb import FlowDefinitionError, RunCancelled, StepFailed, StepTimeout

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from flownb.executors import dask as dask_executor  # noqa: E402
from flownb.executors import resolve_executor  # noqa: E402

WORKERS = 2
HANG_GUARD = 90.0  # seconds before a wait for the cluster is declared hung (not a timing assertion)


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Any]:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def client(cluster_client: Any) -> Any:
    """The module's client, once both workers are up (a previous test may have killed one)."""
    cluster_client.wait_for_workers(WORKERS, timeout=HANG_GUARD)
    return cluster_client


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {HANG_GUARD:g}s")
        time.sleep(0.02)


def worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


def tasks_of(client: Any, run_id: str) -> list[str]:
    """The keys the scheduler still holds for a run (flownb keys contain the run id)."""

    def keys(dask_scheduler: Any) -> list[str]:
        return [str(k) for k in dask_scheduler.tasks if run_id in str(k)]

    return list(client.run_on_scheduler(keys))


# a module-level function: cloudpickle sends it by reference, the workers import this module
def square(item: int) -> dict[str, int]:
    print(f"squaring {item}")
    return {"value": item * item, "pid": os.getpid()}


def test_steps_and_foreach_items_run_in_worker_processes(client: Any) -> None:
    flow = flownb.Flow("dask_pids", db=":memory:", executor=client)
    offset = 100

    @flow.step
    def numbers() -> list[int]:
        return list(range(6))

    # a function defined inside a test: cloudpickle sends it by value, closure and all
    @flow.step
    def shifted(numbers: list[int]) -> dict[str, Any]:
        return {"values": [n + offset for n in numbers], "pid": os.getpid()}

    flow.step(square, name="squares", foreach="numbers")

    run = flow.run().wait().raise_for_status()
    pids = worker_pids(client)
    assert os.getpid() not in pids
    assert run.outputs["shifted"]["values"] == [100, 101, 102, 103, 104, 105]
    assert run.outputs["shifted"]["pid"] in pids
    assert [r["value"] for r in run.outputs["squares"]] == [0, 1, 4, 9, 16, 25]
    assert {r["pid"] for r in run.outputs["squares"]} <= pids
    steps = run.steps.set_index("step")
    assert steps.loc["squares[4]", "stdout"] == "squaring 4\n"


def test_prints_on_the_worker_land_in_the_step_log(client: Any) -> None:
    flow = flownb.Flow("dask_prints", db=":memory:", executor=client)

    @flow.step
    def chatty() -> int:
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 1

    run = flow.run().wait().raise_for_status()
    row = run.steps.set_index("step").loc["chatty"]
    assert row["stdout"] == "to stdout\n"
    assert row["stderr"] == "to stderr\n"


def test_a_failure_on_a_worker_is_recorded_with_message_and_traceback(client: Any) -> None:
    flow = flownb.Flow("dask_fail", db=":memory:", executor=client)

    @flow.step(retries=1, retry_delay=0)
    def broken() -> None:
        print("got this far")
        raise ValueError("the worker says no")

    run = flow.run().wait()
    assert run.status == "failed"
    assert isinstance(run.error, StepFailed)
    assert "the worker says no" in str(run.error)
    attempts = run.steps.sort_values("attempt")
    assert list(attempts["status"]) == ["failed", "failed"]  # retried on the cluster, failed again
    last = attempts.iloc[-1]
    assert last["error_type"] == "ValueError"
    assert last["error"] == "the worker says no"
    assert "in broken" in last["traceback"]  # the worker's frame, not only ours
    assert 'raise ValueError("the worker says no")' in last["traceback"]
    assert last["stdout"] == "got this far\n"  # what it printed before failing is kept


def test_a_killed_worker_fails_the_attempt_and_the_retry_succeeds(client: Any, tmp_path: Path) -> None:
    flow = flownb.Flow("dask_kill", db=":memory:", executor=client)
    marker = tmp_path / "died-once"

    @flow.step(retries=2, retry_delay=0)
    def fragile() -> int:
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker process dies mid-task
        return os.getpid()

    run = flow.run().wait().raise_for_status()
    dead = int(marker.read_text())
    assert run.outputs["fragile"] != dead
    attempts = run.steps.sort_values("attempt")
    assert list(attempts["status"]) == ["failed", "succeeded"]
    assert attempts.iloc[0]["error_type"] == "KilledWorker"


def test_cancel_cancels_the_futures(client: Any, tmp_path: Path) -> None:
    flow = flownb.Flow("dask_cancel", db=":memory:", executor=client)
    release = tmp_path / "release"

    @flow.step(foreach="[0, 1, 2, 3]")
    def hold(item: int) -> int:
        (tmp_path / f"started-{item}").touch()
        while not release.exists():  # busy until the test lets go: the worker's thread cannot be killed
            time.sleep(0.02)
        return item

    run = flow.run()
    wait_until(lambda: len(list(tmp_path.glob("started-*"))) == WORKERS, "both workers to start an item")
    run.cancel()
    with pytest.raises(RunCancelled):
        run.wait().raise_for_status()
    # the scheduler lets go of every task of the run, running and queued alike
    wait_until(lambda: not tasks_of(client, run.id), "the scheduler to drop the run's tasks")
    release.touch()
    # both workers are free again; the queued items were never started
    assert client.submit(os.getpid, pure=False).result(timeout=HANG_GUARD) in worker_pids(client)
    assert len(list(tmp_path.glob("started-*"))) == WORKERS
    statuses = run.steps.set_index("step")["status"]
    assert (statuses.filter(like="hold[") == "cancelled").all()


def test_a_timeout_cancels_the_future_and_records_a_timeout(client: Any, tmp_path: Path) -> None:
    flow = flownb.Flow("dask_timeout", db=":memory:", executor=client)
    release = tmp_path / "release"

    @flow.step(timeout=0.5)
    def slow() -> None:
        while not release.exists():
            time.sleep(0.02)

    run = flow.run().wait()
    try:
        assert isinstance(run.error, StepTimeout)
        wait_until(lambda: not tasks_of(client, run.id), "the scheduler to drop the timed-out task")
    finally:
        release.touch()
    assert run.steps.iloc[0]["error_type"] == "StepTimeout"


def test_a_cell_step_travels_through_its_remote_hook(client: Any) -> None:
    """A notebook cell's function may not pickle; its ``__flownb_remote__`` callable and arguments
    are sent instead."""
    seen: list[dict[str, Any]] = []
    unpicklable = threading.Lock()

    def remote_hook(kwargs: dict[str, Any]) -> tuple[Callable[..., dict[str, Any]], dict[str, Any]]:
        seen.append(kwargs)
        return (lambda base: {"total": base + 1, "pid": os.getpid()}), {"base": kwargs["base"]}

    def cell(base: int) -> Any:
        with unpicklable:  # never called on this path; it would not pickle anyway
            raise AssertionError("the cell function itself must not run")

    cell.__flownb_remote__ = remote_hook  # type: ignore[attr-defined]

    flow = flownb.Flow("dask_cell", db=":memory:", executor=client)

    @flow.step
    def base() -> int:
        return 41

    flow.step(cell, name="cell")
    run = flow.run().wait().raise_for_status()
    assert run.outputs["cell"]["total"] == 42
    assert run.outputs["cell"]["pid"] in worker_pids(client)
    assert seen == [{"base": 41}]


@pytest.mark.parametrize("form", ["address", "cluster"])
def test_a_scheduler_address_or_a_cluster_works_like_a_client(client: Any, db: str, form: str) -> None:
    target = client.scheduler.address if form == "address" else client.cluster
    executor = resolve_executor(target)
    try:
        assert isinstance(executor, dask_executor.DaskExecutor)
        assert resolve_executor(target) is executor  # one client per address or cluster
        flow = flownb.Flow(f"dask_{form}", db=db, executor=target)

        @flow.step
        def where() -> int:
            return os.getpid()

        run = flow.run().wait().raise_for_status()
        assert run.outputs["where"] in worker_pids(client)
        assert executor.client() is not client
        # history is in the caller's store, as with local execution
        history = flownb.sql(f"SELECT status FROM runs WHERE run_id = '{run.id}'", db=db)
        assert list(history["status"]) == ["succeeded"]
    finally:
        executor.close()  # the executor's own client; the cluster stays up
    assert client.status == "running"


def test_executor_forms_and_errors(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = resolve_executor("dask")
    assert shared is resolve_executor("dask")  # one LocalCluster per process, started lazily
    assert shared.name == "dask"
    assert resolve_executor(client).client() is client  # a Client you pass in is used as is
    with pytest.raises(FlowDefinitionError, match="scheduler address"):
        resolve_executor("dusk")
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"pip install flownb\[dask\]") as info:
        resolve_executor("dask")
    assert isinstance(info.value, flownb.FlownbError)


def test_worker_capture_keeps_concurrent_tasks_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """With several threads per worker, each task captures only its own prints."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # undone after the test, with the capture proxy
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    both = threading.Barrier(2)
    results: dict[str, Any] = {}

    def task(name: str) -> str:
        for i in range(50):
            print(f"{name}{i}")
            if i == 0:
                both.wait()
        return name

    def run(name: str) -> None:
        results[name] = dask_executor._run_task(task, {"name": name})

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("a", "b"):
        assert results[name].value == name
        assert results[name].output.stdout == "".join(f"{name}{i}\n" for i in range(50))
    print("outside any task")
    assert sys.stdout.getvalue() == "outside any task\n"  # type: ignore[attr-defined]


def test_executor_dask_starts_one_shared_local_cluster(client: Any) -> None:
    """``executor="dask"``: a LocalCluster of worker processes, started on first use, shared, closable."""
    try:
        flow = flownb.Flow("dask_shared", db=":memory:", executor="dask")

        @flow.step
        def where() -> int:
            return os.getpid()

        first = flow.run().wait().raise_for_status().outputs["where"]
        second = flownb.Flow("dask_shared_2", db=":memory:", executor="dask")
        second.step(where, name="where")
        shared = resolve_executor("dask")
        assert isinstance(shared, dask_executor.DaskExecutor)
        pids = worker_pids(shared.client())
        assert first in pids
        assert second.run().wait().raise_for_status().outputs["where"] in pids
        assert os.getpid() not in pids
        assert shared.client() is not client
        # a dead worker fails the attempt at once, so flownb's retries (not Dask's) decide
        assert shared.client().run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 0
    finally:
        dask_executor.shutdown()
    assert client.status == "running"  # a Client passed in is never closed by flownb


def test_a_large_input_is_sent_to_the_cluster_once_a_run(client: Any) -> None:
    flow = flownb.Flow("dask_scatter", db=":memory:", executor=client)

    @flow.step
    def table() -> list[int]:
        return list(range(400_000))  # about 14 MB as dask sizes it: above the 1 MB threshold

    @flow.step(foreach="[0, 1, 2, 3, 4, 5]")
    def probe(item: int, table: list[int]) -> tuple[int, int, int]:
        import os

        return os.getpid(), id(table), table[item]

    run = flow.run().wait(HANG_GUARD)
    assert run.status == "succeeded", run.error
    seen = run.outputs["probe"]
    assert [v for _, _, v in seen] == [0, 1, 2, 3, 4, 5]
    copies = {(pid, ident) for pid, ident, _ in seen}
    # one object per worker process that ran items: scattered once and shared, not unpickled per task
    assert len(copies) == len({pid for pid, _, _ in seen}) <= WORKERS


def test_a_worker_print_reaches_the_log_before_its_task_ends(client: Any, tmp_path: Path) -> None:

    flag = tmp_path / "heard"
    heard: list[str] = []

    class Listen(flownb.Observer):
        def on_log(self, step: str, attempt: int, stream: str, text: Any) -> None:
            if stream == "stdout" and "halfway" in str(text):
                heard.append(step)
                flag.write_text("go")  # the step waits for this: it ends only if the print came live

    stop = flownb.watch_runs(lambda run: run.observe(Listen(), replay=False) and None)
    try:
        flow = flownb.Flow("dask_live", db=":memory:", executor=client)

        @flow.step(timeout=60)
        def slow() -> str:
            import pathlib
            import time

            print("halfway", flush=True)
            deadline = time.monotonic() + 30
            while not pathlib.Path(str(flag)).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return "saw the flag" if pathlib.Path(str(flag)).exists() else "nobody heard"

        run = flow.run().wait(HANG_GUARD)
    finally:
        stop()
    assert run.status == "succeeded", run.error
    assert run.outputs["slow"] == "saw the flag"
    assert heard == ["slow"]
    assert run.steps.iloc[-1]["stdout"] == "halfway\n"  # written once, not again with the result
