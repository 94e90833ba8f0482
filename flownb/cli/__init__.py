"""The ``flownb`` command: run notebooks and flows headless, inspect, steer and serve runs.

``main.py`` parses the command line and runs each command; ``targets.py`` loads
what ``flownb run`` runs (a notebook's cells, or a Flow in a Python file);
``progress.py`` shows a run in the terminal, with what its steps print.
"""

from flownb.cli.main import main

__all__ = ["main"]
