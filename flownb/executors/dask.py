"""Dask execution: synchronous steps run as tasks on the workers of a Dask cluster.

What runs where:

* The scheduler of the run, the store and the live view stay in the caller's
  process: checkpoints, retries and history are exactly those of local runs.
  Only the step's function (or a ``foreach`` item's call) travels to a worker,
  with its inputs, and only its return value (and what it printed) comes back.
* Functions are pickled with cloudpickle, so functions defined in a notebook or
  in ``__main__`` travel by value. A notebook cell step gives its function a
  ``__flownb_remote__(kwargs)`` hook that returns a picklable zero-argument
  callable (the cell's source and inputs); that callable is sent instead of
  the function, so nothing depends on pickling the notebook's namespace.

Guarantees:

* One attempt is one Dask task, submitted with ``retries=0``: Dask never
  re-runs an attempt on its own, flownb's retry policy decides.
* On a cluster started here (``executor="dask"``) the scheduler's
  ``allowed-failures`` is 0, so a worker that dies while running a step fails
  that attempt at once (``KilledWorker``), and the step's retries then run it
  again, on a live worker. On a cluster you bring, Dask's own
  ``distributed.scheduler.allowed-failures`` (3 by default) applies first.
* A timeout or a cancel cancels the task's future: a task that has not started
  never starts. A task already running keeps its worker thread until it
  returns (Python threads cannot be killed, on a worker as locally); its result
  is discarded.
* What the step writes to ``sys.stdout``/``sys.stderr`` on the worker is
  captured per task (also with several threads per worker) and written to the
  step's log when the attempt ends, whether it succeeded or raised.
* An exception raised on a worker is re-raised here with its type, message and
  the worker's traceback, so retries (``retry_on``) and the store's ``error`` /
  ``traceback`` columns see it as they would locally.

Workers need flownb installed (the task wrapper lives in this module) and any
module the steps import; Dask's own docs describe how to ship them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import os
import re
import threading
import types
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flownb.errors import FlowDefinitionError, FlownbError
from flownb.executors import capture
from flownb.executors.capture import CURRENT_LOG, StepLog

if TYPE_CHECKING:
    from collections.abc import Callable

    from flownb.executors import Attempt

_INSTALL_HINT = "pip install flownb[dask]"
#: ``tcp://host:8786``, ``tls://...``, or a bare ``host:port``
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://.+|[\w.\-]+:\d+)$", re.IGNORECASE)


class DaskNotInstalled(FlownbError, ImportError):
    """The ``dask`` executor was asked for, but dask.distributed is not importable."""


def _distributed() -> Any:
    """Import distributed only when a Dask executor is asked for (``import flownb`` stays light)."""
    try:
        import distributed
    except ImportError as exc:
        raise DaskNotInstalled(
            f"executor='dask' needs dask.distributed, which is not installed ({exc}); "
            f"install it with `{_INSTALL_HINT}`"
        ) from exc
    return distributed


# -- the worker side -------------------------------------------------------------------


@dataclass
class _Output:
    """What one task printed on its worker."""

    stdout: str = ""
    stderr: str = ""


@dataclass
class _Done:
    """A task's return value with what it printed, as it travels back to the caller."""

    value: Any
    output: _Output


_ERRATTR = "_flownb_worker_output"


def _output(log: StepLog) -> _Output:
    return _Output(log.text("stdout"), log.text("stderr"))


def _renamed(code: types.CodeType, filename: str) -> types.CodeType:
    """``code`` (and the code nested in it) with its file name back: cloudpickle ships a function's
    code by value under the name "<dynamic-code>", so a worker's traceback lost its source lines."""
    consts = tuple(_renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


class _Live:
    """A task's prints as they happen, sent to the caller as worker events on ``topic``:
    each message says where in its stream its text starts, so the caller writes every
    character once, whether it arrives live or with the task's result."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.offsets = {"stdout": 0, "stderr": 0}
        self.worker: Any = None
        with contextlib.suppress(ValueError, ImportError):  # not on a worker: nothing to stream to
            self.worker = _distributed().get_worker()

    def __call__(self, stream: str, text: Any) -> None:
        if stream not in self.offsets or self.worker is None:
            return
        offset = self.offsets[stream]
        self.offsets[stream] = offset + len(text)
        with contextlib.suppress(Exception):  # a print must never fail the step
            self.worker.log_event(self.topic, {"stream": stream, "offset": offset, "text": text})


def _run_task(
    fn: Callable[..., Any], kwargs: dict[str, Any], filename: str | None = None, topic: str | None = None
) -> _Done:
    """The task a worker runs: ``fn(**kwargs)`` with its prints captured.

    A coroutine returned by the function (a cell step with top-level await) is
    run to completion here: a coroutine cannot travel back to the caller.
    On an exception, the output captured so far rides on the exception itself
    (exceptions pickle their ``__dict__``), so a failed attempt keeps its log.
    """
    if filename and isinstance(fn, types.FunctionType) and fn.__code__.co_filename != filename:
        fn.__code__ = _renamed(fn.__code__, filename)
    # the engine's own stdout proxy, on the worker: tasks side by side on one
    # worker's threads never swap their outputs
    capture.install()
    log = StepLog(_Live(topic)) if topic else StepLog()
    token = CURRENT_LOG.set(log)
    try:
        value = fn(**kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except BaseException as exc:
        with contextlib.suppress(Exception):  # an exception without a __dict__ just loses its log
            setattr(exc, _ERRATTR, _output(log))
        raise
    finally:
        CURRENT_LOG.reset(token)
    return _Done(value, _output(log))


async def _await(awaitable: Any) -> Any:
    return await awaitable


# -- the caller side -------------------------------------------------------------------


class DaskExecutor:
    """Runs each attempt of a synchronous step as one task on a Dask cluster.

    Build one with :meth:`for_target`; the engine does, from ``Flow(executor=...)``.
    The client is connected lazily, in a thread, on the first step that needs
    it, so neither ``flow.run()`` nor the engine's loop waits for a cluster to
    start.
    """

    name = "dask"

    def __init__(self, target: Any, *, label: str) -> None:
        self._target = target  # "dask", an address, a Cluster, or a Client
        self._label = label
        self._client: Any = None
        self._owned: list[Any] = []  # what this executor started, closed by close()
        #: run id -> id(value) -> (the value, its scattered future): large inputs sent once a run
        self._scatter_cache: dict[str, dict[int, tuple[Any, Any]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<DaskExecutor {self._label}>"

    @classmethod
    def for_target(cls, spec: Any) -> DaskExecutor:
        """The executor for ``"dask"``, a ``distributed.Client``, a Cluster, or a scheduler address.

        One executor per target and process: every flow that says
        ``executor="dask"`` shares one LocalCluster, one address one Client, and one
        Cluster object one Client. A Client you pass in is used as it is.
        """
        distributed = _distributed()
        if isinstance(spec, distributed.Client):
            # not kept in the registry: that would keep your Client alive after you drop it
            return cls(spec, label=f"client {spec.scheduler.address if spec.scheduler else '?'}")
        if spec == "dask":
            key: Any = "dask"
            label = "local cluster"
        elif isinstance(spec, str) and _ADDRESS.match(spec):
            key, label = ("address", spec), spec
        elif hasattr(spec, "scheduler_address"):  # a LocalCluster, SLURMCluster, ...
            key, label = ("cluster", id(spec)), f"cluster {spec.scheduler_address}"
        else:
            raise FlowDefinitionError(
                f"executor={spec!r} is not understood; use None or 'local' (threads), 'dask' (a local "
                "Dask cluster), a distributed.Client, a Cluster, or a scheduler address like 'tcp://host:8786'"
            )
        with _registry_lock:
            executor = _EXECUTORS.get(key)
            # a Cluster is keyed by id(): check it is still the same object
            if executor is None or (not isinstance(spec, str) and executor._target is not spec):
                executor = cls(spec, label=label)
                _EXECUTORS[key] = executor
            return executor

    # -- connection --------------------------------------------------------------

    def client(self) -> Any:
        """The ``distributed.Client`` (connecting, or starting the local cluster, on first use)."""
        with self._lock:
            if self._client is None or self._client.status in ("closing", "closed"):
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        distributed = _distributed()
        target = self._target
        if isinstance(target, distributed.Client):
            return target
        if target == "dask":
            import dask

            # a worker that dies fails the attempt at once; flownb's retries take over
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                cluster = distributed.LocalCluster(processes=True, dashboard_address=":0")
            self._owned.append(cluster)
            target = cluster
        client = distributed.Client(target, set_as_default=False)
        self._owned.insert(0, client)
        return client

    def close(self) -> None:
        """Close the client and cluster this executor started (never a Client you passed in)."""
        with self._lock:
            owned, self._owned = self._owned, []
            self._client = None
        for thing in owned:
            with contextlib.suppress(Exception):  # closing at exit: nothing left to tell
                thing.close()

    # -- one attempt ---------------------------------------------------------------

    async def call(self, fn: Any, kwargs: dict[str, Any], ctx: Attempt) -> Any:
        """Run ``fn(**kwargs)`` as one task on the cluster and return its value.

        The step's worker-side prints are written to ``ctx.log``. A cancel (run
        cancel or the attempt's timeout) cancels the task's future.
        """
        client = self._client or await asyncio.to_thread(self.client)
        remote = getattr(fn, "__flownb_remote__", None)
        if remote is not None:  # a notebook cell: its source and inputs travel, not __main__
            fn, kwargs = remote(kwargs)
        kwargs = await asyncio.to_thread(self._scattered, client, ctx.run_id, kwargs)
        key = f"{ctx.step}-{ctx.run_id}-{ctx.attempt}-{uuid.uuid4().hex[:8]}"
        code = getattr(fn, "__code__", None)
        filename = code.co_filename if isinstance(code, types.CodeType) else None
        written = {"stdout": 0, "stderr": 0}
        topic = f"flownb-{key}"

        def heard(event: Any) -> None:  # on the client's thread, as the worker prints
            _, msg = event
            _write_from(ctx, written, msg["stream"], msg["offset"], msg["text"])

        client.subscribe_topic(topic, heard)
        future = client.submit(_run_task, fn, kwargs, filename, topic, key=key, pure=False, retries=0)
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        # called on Dask's callback thread when the task ends (done, erred or cancelled)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(_settle, finished))
        try:
            await finished
            # Fetch the value (or the worker's exception) on the client's loop. Shielded: a
            # cancel here abandons the fetch instead of cancelling distributed's gather, which
            # would leave its inner tasks failing unobserved ("Task exception was never retrieved").
            bridge = asyncio.run_coroutine_threadsafe(
                client.gather(future, asynchronous=True), client.loop.asyncio_loop
            )
            done: _Done = await asyncio.shield(asyncio.wrap_future(bridge))
        except asyncio.CancelledError:
            _cancel(client, future)
            raise
        except BaseException as exc:
            output = exc.__dict__.pop(_ERRATTR, None) if hasattr(exc, "__dict__") else None
            if isinstance(output, _Output):
                _write(ctx, written, output)
            raise
        finally:
            with contextlib.suppress(Exception):  # a closed client has no subscriptions left
                client.unsubscribe_topic(topic)
        _write(ctx, written, done.output)
        return done.value

    def _scattered(self, client: Any, run_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with each large value replaced by a future of it, scattered once a run:
        a value that many tasks read (a foreach's input) travels to the cluster once, not with
        every task. Values inside a notebook cell's ``inputs`` count one by one."""
        from dask.sizeof import sizeof

        cache = self._scatter_cache.setdefault(run_id, {})
        while len(self._scatter_cache) > _RUNS_KEPT:  # oldest run first: its futures are let go
            self._scatter_cache.pop(next(iter(self._scatter_cache)))

        def place(value: Any) -> Any:
            if isinstance(value, int | float | bool | type(None)):
                return value
            try:
                large = sizeof(value) >= SCATTER_BYTES
            except Exception:  # noqa: BLE001  (a value dask cannot size travels as it is)
                return value
            if not large:
                return value
            with self._lock:  # the items of a foreach ask at once: one of them scatters
                found = cache.get(id(value))
                if found is None or found[0] is not value:
                    # wrapped: scatter() sends each element of a list or dict as a value of its own
                    found = cache[id(value)] = (value, client.scatter([value], hash=False)[0])
            return found[1]

        out = {k: place(v) for k, v in kwargs.items()}
        if isinstance(out.get("inputs"), dict) and set(out) == {"inputs"}:
            out["inputs"] = {k: place(v) for k, v in kwargs["inputs"].items()}
        return out


def _settle(finished: asyncio.Future[None]) -> None:
    if not finished.done():  # the attempt may have been cancelled meanwhile
        finished.set_result(None)


def _cancel(client: Any, future: Any) -> None:
    """Ask the scheduler to drop the task; never waits (the cluster may be what hangs)."""
    with contextlib.suppress(Exception):  # a closed client has nothing left to cancel
        asyncio.run_coroutine_threadsafe(
            client.cancel([future], asynchronous=True, reason="flownb: attempt cancelled or timed out"),
            client.loop.asyncio_loop,
        )


def _write(ctx: Attempt, written: dict[str, int], output: _Output) -> None:
    """What the task printed that did not arrive live; later live events then change nothing."""
    _write_from(ctx, written, "stdout", 0, output.stdout)
    _write_from(ctx, written, "stderr", 0, output.stderr)
    written["stdout"] = written["stderr"] = 1 << 62  # closed


def _write_from(ctx: Attempt, written: dict[str, int], stream: str, offset: int, text: str) -> None:
    """Write ``text`` (which starts at ``offset`` of its stream) past what was written already."""
    done = written.get(stream, 0)
    if offset + len(text) <= done:
        return
    ctx.log.write(stream, text[max(0, done - offset) :])
    written[stream] = offset + len(text)


#: inputs at least this large (as dask sizes them) are scattered once a run (FLOWNB_SCATTER_BYTES)
SCATTER_BYTES = int(os.environ.get("FLOWNB_SCATTER_BYTES") or 1 << 20)
#: runs whose scattered inputs are kept (a run's steps may read them until it ends)
_RUNS_KEPT = 8

_EXECUTORS: dict[Any, DaskExecutor] = {}
_registry_lock = threading.Lock()


def shutdown() -> None:
    """Close every client and local cluster flownb started in this process.

    Runs at interpreter exit; call it yourself to free the workers earlier.
    A later ``executor="dask"`` run starts a new cluster.
    """
    with _registry_lock:
        executors = list(_EXECUTORS.values())
        _EXECUTORS.clear()
    for executor in executors:
        executor.close()


atexit.register(shutdown)
