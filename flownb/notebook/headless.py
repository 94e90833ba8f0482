"""The IPython shell ``flownb run`` defines a notebook's steps in, without a frontend.

A plain ``InteractiveShell`` refuses ``%matplotlib inline`` (it has no GUI event
loop to integrate with) and runs ``!cmd`` on the process's own file
descriptors. Here ``%matplotlib inline`` selects the inline backend, whose
figures reach the step's output as images, exactly as in a kernel; inside a
step, ``!cmd`` runs through the step's shell (stepshell.py) and its output is
the step's.
"""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell


class HeadlessShell(InteractiveShell):
    """An InteractiveShell for notebooks run from the command line."""

    def enable_gui(self, gui: Any = None) -> None:
        """No event loop to integrate: the inline backend draws without one."""
        return None


def headless_shell() -> InteractiveShell:
    """The process's shell: a HeadlessShell unless another shell was made first."""
    if InteractiveShell.initialized():
        return InteractiveShell.instance()
    return HeadlessShell.instance()
