"""The lease rules (store/lease.py) on their own, and the in-memory store's leases."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psutil

import flownb
from flownb.store import lease
from flownb.store.lease import Lease, Owner


def _lease(owner: Owner, *, renewed_ago: float = 0.0, ttl: float = 30.0, state: str = lease.HELD) -> Lease:
    return Lease("r1", 1, owner, time.time() - renewed_ago, ttl, state)


def test_an_owner_on_another_node_lives_while_it_renews() -> None:
    elsewhere = Owner(12345, "other-host", "another-node", 1.0)
    me = lease.me()
    assert not lease.may_take_over(_lease(elsewhere, renewed_ago=5), me)
    assert lease.may_take_over(_lease(elsewhere, renewed_ago=31), me)
    assert lease.may_take_over(_lease(elsewhere, state=lease.RELEASED), me)


def test_an_owner_on_this_node_lives_while_its_pid_and_start_time_do() -> None:
    me = lease.me()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = Owner(child.pid, me.host, me.node, psutil.Process(child.pid).create_time())
        # silent for longer than its lease: on this node only the process itself counts
        assert not lease.may_take_over(_lease(alive, renewed_ago=3600), me)
        reused = Owner(child.pid, me.host, me.node, alive.started - 100)  # the pid, another process
        assert lease.may_take_over(_lease(reused), me)
    finally:
        child.kill()
        child.wait()
    assert lease.may_take_over(_lease(alive), me)  # gone
    assert lease.may_take_over(_lease(me), me)  # this process: the engine checked it is not running it


def test_the_in_memory_store_holds_a_lease_while_a_run_lives() -> None:
    flow = flownb.Flow("mem", db=":memory:")
    started, release = threading.Event(), threading.Event()

    @flow.step
    def slow() -> int:
        started.set()
        release.wait(30)
        return 1

    run = flow.run()
    assert started.wait(30)
    store = run.execution.store
    owner = store.run_owner(run.id)
    assert owner is not None and owner.held and owner.owner.pid == os.getpid()
    assert list(store.query("SELECT status FROM runs")["status"]) == ["running"]
    release.set()
    assert run.wait(30).status == "succeeded"
    assert not store.run_owner(run.id).held  # type: ignore[union-attr]
    assert list(store.query("SELECT status FROM runs")["status"]) == ["succeeded"]
    assert store.claim_run(run.id) == 2  # a resume takes it with a new epoch
