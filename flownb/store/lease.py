"""Run ownership: one live owner per run, named by a lease in the store.

A live run has exactly one owner process. The owner holds the run's lease: a row
of ``_leases`` naming it (pid, host, the process's start time, and ``node``, which
tells machines and pid namespaces apart) with an ``epoch``, renewed every
``ttl / 10`` seconds for as long as the run lives, from the store's own thread (never
the engine's loop, which a long step may keep busy).

The rules, kept here and nowhere else:

* **Liveness** (:func:`owner_alive`). On the owner's node, the owner lives while a
  process with its pid *and* its start time exists (a pid reused by another program
  has another start time); on another node, while it renewed within ``ttl``
  seconds (30 by default).
* **Takeover** (:func:`may_take_over`). A process may take a run's lease when the
  lease is released (the run ended), its owner is dead, or it is this very process
  (the engine checks first that the run is not active here). A takeover writes
  ``epoch + 1``; it happens under the store's file lock, so of two concurrent
  resumes exactly one takes the lease and the other gets :class:`RunActive`.
* **Fencing.** A process commits a run's records only while it holds the run's
  current epoch. The store checks its leases each time it takes its turn with the
  file (no other process can change them while it has the file), so records of an
  older epoch that arrive late are refused at commit: the views and resume never
  see them, and two processes never both run a committed step.
* **Interrupted** (:data:`INTERRUPTED_SQL`). A run whose recorded status is live
  (pending, running, waiting, paused) shows as ``interrupted`` when its lease is not
  held (released, or its owner found dead), or was not renewed within its ``ttl``.
  A process that opens the store marks the leases of dead owners on its own node
  dead (:func:`dead_on_this_node`), so a run whose process was killed shows as
  interrupted at once; the views apply the rule (SQL cannot see processes).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

#: how long a lease lives without renewal, for owners on other nodes
DEFAULT_TTL = 30.0
#: a start time this close to the lease's is the same process (psutil's is exact to 10 ms)
_SAME_START = 0.5
#: statuses of a run someone may still be working on (events.RUN_ACTIVE, as SQL)
LIVE_STATUSES = ("pending", "running", "waiting", "paused")
HELD, RELEASED, DEAD = "held", "released", "dead"

#: the SQL condition, over ``_leases`` as ``o`` (LEFT JOINed: NULL when the run has none),
#: under which a run with a live recorded status shows as interrupted
INTERRUPTED_SQL = (
    f"(o.run_id IS NULL OR o.state <> '{HELD}' "
    "OR o.renewed_at + to_microseconds(CAST(o.ttl_s * 1e6 AS BIGINT)) < now())"
)


def ttl_from_environment() -> float:
    """``FLOWNB_LEASE_TTL`` (seconds), else 30; renewal comes every tenth of it."""
    text = os.environ.get("FLOWNB_LEASE_TTL")
    if not text:
        return DEFAULT_TTL
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_TTL
    return value if math.isfinite(value) and value > 0 else DEFAULT_TTL


@dataclass(frozen=True, slots=True)
class Owner:
    """A process that may own runs."""

    pid: int
    host: str
    node: str
    """Which machine and pid namespace: two owners on one node can check each other's pid."""
    started: float
    """The process's start time (seconds since the epoch), as psutil reads it."""

    @property
    def key(self) -> str:
        return f"{self.node}/{self.pid}/{self.started:.3f}"


@dataclass(frozen=True, slots=True)
class Lease:
    run_id: str
    epoch: int
    owner: Owner
    renewed_at: float
    """Seconds since the epoch."""
    ttl: float
    state: str

    @property
    def held(self) -> bool:
        return self.state == HELD


@functools.cache
def this_process() -> Owner:
    """This process as an owner (fork-safe: looked up again under another pid)."""
    return _owner_of(os.getpid())


def me() -> Owner:
    owner = this_process()
    if owner.pid != os.getpid():  # a forked child is another process
        this_process.cache_clear()
        owner = this_process()
    return owner


def _owner_of(pid: int) -> Owner:
    import psutil  # here: reading a process's start time is the only use, and import flownb stays quick

    return Owner(pid, socket.gethostname(), node_id(), psutil.Process(pid).create_time())


@functools.cache
def node_id() -> str:
    """The machine (its boot) and pid namespace this process sees pids in.

    ``FLOWNB_NODE`` overrides it: two containers that share a store file and see one
    another's pids may set the same value. Without /proc, the host name stands in.
    """
    given = os.environ.get("FLOWNB_NODE")
    if given:
        return given
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    if not boot:
        import psutil

        boot = str(int(psutil.boot_time()))
    return f"{socket.gethostname()}:{boot}:{namespace}"


def process_alive(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (a zombie does not)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > _SAME_START:
            return False  # the pid was reused by another process
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; we may not look at it


def owner_alive(lease: Lease, now: float | None = None) -> bool:
    """The one liveness rule (see the module docstring)."""
    if not lease.held:
        return False
    if lease.owner.node == node_id():
        return process_alive(lease.owner.pid, lease.owner.started)
    return (time.time() if now is None else now) - lease.renewed_at <= lease.ttl


def may_take_over(lease: Lease | None, taker: Owner, now: float | None = None) -> bool:
    """Whether ``taker`` may take the run's lease (see the module docstring)."""
    return lease is None or lease.owner == taker or not owner_alive(lease, now)


def dead_on_this_node(leases: list[Lease]) -> list[Lease]:
    """The held leases among ``leases`` whose owner, on this node, is gone."""
    node = node_id()
    return [
        lease for lease in leases
        if lease.held and lease.owner.node == node and not process_alive(lease.owner.pid, lease.owner.started)
    ]  # fmt: skip


def renew_every(ttl: float) -> float:
    """Renewal period: ten renewals a lifetime, so a few slow turns with the file never expire a lease."""
    return ttl / 10
