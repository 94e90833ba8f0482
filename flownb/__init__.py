"""flownb: notebook cells as durable workflows.

Users import from here only; everything in subpackages is internal.
"""

from importlib.metadata import version as _version

from flownb.engine.run import Run
from flownb.errors import (
    ApprovalRejected,
    CycleError,
    FlowDefinitionError,
    FlownbError,
    NotebookFileError,
    OutputNotStorable,
    RunCancelled,
    RunFailed,
    RunNotFound,
    StepFailed,
    StepTimeout,
    StoreLocked,
    TemplateError,
)
from flownb.model.flow import Flow
from flownb.queries import history, sql

# pyproject.toml holds the one version; the installed metadata carries it here
__version__ = _version("flownb")

__all__ = [
    "ApprovalRejected",
    "CycleError",
    "Flow",
    "FlowDefinitionError",
    "FlownbError",
    "NotebookFileError",
    "OutputNotStorable",
    "Run",
    "RunCancelled",
    "RunFailed",
    "RunNotFound",
    "StepFailed",
    "StepTimeout",
    "StoreLocked",
    "TemplateError",
    "history",
    "load_ipython_extension",
    "sql",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext flownb``: register the magics and the live view."""
    from flownb.notebook.extension import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext flownb``: detach the kernel's session and give ``display()`` back to IPython."""
    from flownb.notebook.extension import unload

    unload(ipython)
