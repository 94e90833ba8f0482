"""The one error tree of flownb.

Every error flownb raises on purpose derives from :class:`FlownbError` and
carries a stable ``code``; messages name the step and the run, and say what to
do next::

    FlownbError
    ├── FlowDefinitionError        a flow or step is defined wrongly
    │   └── CycleError             the dependencies form a cycle
    ├── TemplateError              a template or expression does not render
    ├── StepFailed                 a step failed after its retries
    │   ├── StepTimeout            an attempt ran past its timeout
    │   ├── ApprovalRejected       an approval gate was rejected
    │   └── OutputNotStorable      kept for compatibility: unstorable outputs are now volatile
    ├── RunFailed                  a run ended without success (raised by raise_for_status)
    │   └── RunCancelled           the run was cancelled
    ├── RunExists                  a run of that id exists already
    ├── RunNotFound                no run with that id in the store
    ├── RunActive                  another live process owns the run (it holds the run's lease)
    ├── NotebookFileError          a notebook file cannot be read or is not a notebook
    └── StoreError                 the store file failed: disk full, damaged, read-only, missing...
        └── StoreLocked            another process holds the store file (its turn did not end in time)

Cancellation inside the engine travels as :class:`asyncio.CancelledError`, a
``BaseException``, so that ``except Exception`` in user code cannot swallow it.
"""

from __future__ import annotations


class FlownbError(Exception):
    """The root of every error flownb raises on purpose."""

    code = "flownb"


class FlowDefinitionError(FlownbError):
    """A flow or one of its steps is defined wrongly; fix the definition."""

    code = "definition"


class CycleError(FlowDefinitionError):
    """The dependencies of a flow form a cycle."""

    code = "cycle"

    def __init__(self, flow: str, path: list[str]) -> None:
        self.path = path
        super().__init__(
            f"flow {flow!r} has a dependency cycle: {' -> '.join(path)}; "
            "remove one of these dependencies"
        )


class TemplateError(FlownbError):
    """A template or expression could not be compiled or rendered."""

    code = "template"


class StepFailed(FlownbError):
    """A step failed after all of its attempts."""

    code = "step_failed"

    def __init__(self, message: str, *, step: str | None = None, run_id: str | None = None) -> None:
        self.step = step
        self.run_id = run_id
        super().__init__(message)


class StepTimeout(StepFailed):
    """An attempt of a step ran past its timeout."""

    code = "step_timeout"


class ApprovalRejected(StepFailed):
    """An approval gate was rejected."""

    code = "approval_rejected"


class OutputNotStorable(StepFailed):
    """A value none of the store's codecs can keep. Steps no longer fail with it: such an
    output is kept in memory and recorded as ``volatile``; the class stays for code that
    catches it."""

    code = "output_not_storable"


class RunFailed(FlownbError):
    """A run ended without success."""

    code = "run_failed"


class RunCancelled(RunFailed):
    """The run was cancelled."""

    code = "run_cancelled"


class RunExists(FlownbError):
    """A run was given an id that another run of the store has (a schedule's fire started it)."""

    code = "run_exists"


class RunNotFound(FlownbError):
    """No run with that id exists in the store."""

    code = "run_not_found"


class NotebookFileError(FlownbError):
    """A notebook file cannot be read or is not a valid notebook; the message says why."""

    code = "notebook_file"


class RunActive(FlownbError):
    """A run is owned by another live process: it holds the run's lease and renews it.

    Raised by a resume (from any process) while the owner lives, however long its
    current step takes, and to an owner that lost its lease, when its late records
    are refused.
    """

    code = "run_active"

    def __init__(self, run_id: str, pid: int | None, host: str | None, *, detail: str = "") -> None:
        self.run_id = run_id
        self.pid = pid
        self.host = host
        where = f"process {pid} on host {host}" if pid is not None else "another process"
        super().__init__(
            f"run {run_id} is owned by {where}, which is alive{detail}; wait for it to end (it then shows as "
            "succeeded, failed or cancelled), or stop that process and resume the run"
        )


class StoreError(FlownbError):
    """The store file failed: one line naming the file, the cause and what to do.

    ``cause`` is one of a few stable words: ``disk full``, ``damaged``, ``read-only``,
    ``missing``, ``locked``, ``query``, ``closed`` or ``failed``.
    """

    code = "store"

    def __init__(self, path: str, cause: str, message: str) -> None:
        self.path = path
        self.cause = cause
        # one line: DuckDB's own messages span several (a caret under the query, hints)
        super().__init__(" ".join(message.split()))


class StoreLocked(StoreError):
    """Another process holds the store file and its turn did not end within the wait."""

    code = "store_locked"

    def __init__(
        self, path: str, pid: int | None, waited: float, *, host: str | None = None, doing: str | None = None
    ) -> None:
        self.pid = pid
        self.host = host
        self.doing = doing
        holder = f"process {pid}" if pid is not None else "another process"
        if host:
            holder += f" on host {host}"
        if doing:
            holder += f", which is {doing}"
        super().__init__(
            path, "locked",
            f"the store {path} is locked by {holder} (waited {waited:.1f}s); let it finish, stop that "
            "process, or use another store with Flow(db=...) or FLOWNB_DB",
        )  # fmt: skip
