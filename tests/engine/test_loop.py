"""The engine's loop lends its role to a worker only while it sleeps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

import flownb
from flownb.executors.local import LocalExecutor
from flownb.executors.loop import EngineLoop


@pytest.fixture
def loop() -> Iterator[EngineLoop]:
    loop = EngineLoop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def on_loop(loop: EngineLoop, fn: object) -> None:
    done = threading.Event()
    loop.call_soon_threadsafe(lambda: (fn(), done.set()))  # type: ignore[operator]
    assert done.wait(10)


def borrow_when_asleep(loop: EngineLoop) -> None:
    """Borrow the loop's role as soon as it goes back to sleep."""
    for _ in range(500):
        if loop.borrow():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the loop never slept")


def test_a_worker_borrows_the_loop_while_it_sleeps_and_the_loop_waits_for_it(loop: EngineLoop) -> None:
    ran = threading.Event()
    borrow_when_asleep(loop)
    try:
        loop.call_soon_threadsafe(ran.set)
        assert not ran.wait(0.3), "the loop ran a callback while a worker held its role"
    finally:
        loop.give_back()
    assert ran.wait(10)


def test_nobody_borrows_the_loop_while_it_runs_a_callback(loop: EngineLoop) -> None:
    inside, release = threading.Event(), threading.Event()
    loop.call_soon_threadsafe(lambda: (inside.set(), release.wait(10)))
    assert inside.wait(10)
    try:
        assert not loop.borrow()
    finally:
        release.set()


def test_what_a_borrowing_worker_schedules_runs_on_the_loop_thread(loop: EngineLoop) -> None:
    threads: list[int] = []
    done = threading.Event()
    borrow_when_asleep(loop)
    try:
        assert not loop.here()
        loop.soon(lambda: threads.append(threading.get_ident()))
        loop.later(0.01, lambda: (threads.append(threading.get_ident()), done.set()))
    finally:
        loop.give_back()
    assert done.wait(10)
    loop_thread: list[int] = []
    on_loop(loop, lambda: loop_thread.append(threading.get_ident()))
    assert threads == loop_thread * 2


def test_a_job_cancelled_before_a_worker_takes_it_never_runs(loop: EngineLoop) -> None:
    executor = LocalExecutor(max_workers=1)
    hold, ran, settled = threading.Event(), [], threading.Event()

    class Callback:
        dropped = False

        def __call__(self, result: object, error: BaseException | None) -> None:
            settled.set()

    first, second = Callback(), Callback()
    on_loop(loop, lambda: executor.submit(hold.wait, {"timeout": 10}, None, first, loop))
    on_loop(loop, lambda: executor.submit(lambda: ran.append(1), {}, None, second, loop))
    second.dropped = True  # the one worker is busy: the second job still waits in the queue
    hold.set()
    assert settled.wait(10)
    on_loop(loop, lambda: executor.submit(lambda: ran.append(2), {}, None, Callback(), loop))
    for _ in range(100):
        if ran:
            break
        threading.Event().wait(0.05)
    assert ran == [2]


def test_a_step_cancelled_while_it_waits_for_a_thread_never_runs(loop: EngineLoop) -> None:
    executor = LocalExecutor(max_workers=1)
    hold, started, ran = threading.Event(), threading.Event(), []
    ctx = SimpleNamespace(log=None)

    def occupy() -> bool:
        started.set()
        return hold.wait(10)

    def settle() -> None:  # the loop has run what was handed to it before (no sleeps to guess with)
        for _ in range(3):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(10)

    busy = asyncio.run_coroutine_threadsafe(executor.call(occupy, {}, ctx), loop)  # type: ignore[arg-type]
    assert started.wait(10)  # the one thread is taken
    waiting = asyncio.run_coroutine_threadsafe(executor.call(lambda: ran.append(1), {}, ctx), loop)  # type: ignore[arg-type]
    settle()  # its job waits in the queue
    waiting.cancel()
    settle()  # the cancel reached the job's future
    hold.set()
    assert busy.result(10) is True
    after = asyncio.run_coroutine_threadsafe(executor.call(lambda: ran.append(2), {}, ctx), loop)  # type: ignore[arg-type]
    after.result(10)
    assert ran == [2]


def test_a_chain_of_plain_steps_commits_each_step_before_the_next_starts(tmp_path: object) -> None:
    """Steps settled by workers (and committed by them) keep sync durability."""
    db = str(tmp_path) + "/chain.duckdb"  # type: ignore[operator]
    flow = flownb.Flow("chain", db=db)
    committed: list[int] = []

    def make(i: int) -> object:
        def step() -> int:
            if i:
                done = flownb.sql("SELECT count(*) AS n FROM steps WHERE status = 'succeeded'", db=db)
                committed.append(int(done["n"][0]))
            return i

        return step

    for i in range(12):
        flow.step(make(i), name=f"s{i}", after=(f"s{i - 1}",) if i else ())
    run = flow.run().wait(60)
    assert run.status == "succeeded", run.error
    assert committed == list(range(1, 12))
    assert run.outputs["s11"] == 11



def test_a_chain_of_plain_steps_runs_without_waking_the_loop_for_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers settle the steps and start the next: the loop turns a few times for its
    timers, not once or more a step."""
    from flownb.executors import loop as loop_module

    turns = [0]
    select = loop_module._LendingSelector.select

    def counted(self: loop_module._LendingSelector, timeout: float | None = None) -> object:
        turns[0] += 1
        return select(self, timeout)

    flow = flownb.Flow("no-wake", db=":memory:")
    for i in range(300):
        flow.step(lambda: None, name=f"s{i}", after=(f"s{i - 1}",) if i else ())
    flow.graph()
    monkeypatch.setattr(loop_module._LendingSelector, "select", counted)
    assert flow.run().wait(60).status == "succeeded"
    assert turns[0] < 100, f"the loop turned {turns[0]} times for 300 steps"
