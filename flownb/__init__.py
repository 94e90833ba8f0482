"""flownb: notebook cells as durable workflows.

Users import from here only; everything in subpackages is internal.
"""

from importlib.metadata import version as _version

from flownb.api import Flow, serve, watch_runs
from flownb.engine.attached import attach
from flownb.engine.observe import Observer
from flownb.engine.run import Run
from flownb.errors import (
    ApprovalRejected,
    CycleError,
    FlowDefinitionError,
    FlownbError,
    NotebookFileError,
    OutputNotStorable,
    RunActive,
    RunCancelled,
    RunExists,
    RunFailed,
    RunNotFound,
    StepFailed,
    StepTimeout,
    StoreError,
    StoreLocked,
    TemplateError,
)
from flownb.queries import history, sql
from flownb.steps.registry import register_kind

# pyproject.toml holds the one version; the installed metadata carries it here
__version__ = _version("flownb")

__all__ = [
    "ApprovalRejected",
    "CycleError",
    "Flow",
    "FlowDefinitionError",
    "FlownbError",
    "NotebookFileError",
    "Observer",
    "OutputNotStorable",
    "Run",
    "RunActive",
    "RunCancelled",
    "RunExists",
    "RunFailed",
    "RunNotFound",
    "StepFailed",
    "StepTimeout",
    "StoreError",
    "StoreLocked",
    "TemplateError",
    "attach",
    "history",
    "load_ipython_extension",
    "register_kind",
    "serve",
    "sql",
    "unload_ipython_extension",
    "watch_runs",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext flownb``: register the magics and the live view."""
    from flownb.notebook.extension import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext flownb``: detach the kernel's session and give ``display()`` back to IPython."""
    from flownb.notebook.extension import unload

    unload(ipython)
