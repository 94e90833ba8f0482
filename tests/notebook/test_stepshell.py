"""Magics looked up from steps running at once (IPython imports its magics lazily)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

MAGICS_MODULE = """
import time
from IPython.core.magic import Magics, line_magic, magics_class

@magics_class
class {cls}(Magics):
    @line_magic
    def {name}_one(self, line):
        return "{name}1"

    time.sleep(0.3)  # the class body is half defined while the other step imports its own

    @line_magic
    def {name}_two(self, line):
        return "{name}2"
"""

SCRIPT = """
import threading
from IPython.core.interactiveshell import InteractiveShell
from flownb.notebook.stepshell import StepShell

shell = InteractiveShell.instance()
shell.magics_manager.register_lazy("a_one", "slow_a:SlowA", "line")
shell.magics_manager.register_lazy("b_one", "slow_b:SlowB", "line")
results, errors = {}, []

def step(name):
    try:
        results[name] = StepShell(shell, {}).run_line_magic(name + "_one", "")
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=step, args=(n,)) for n in ("a", "b")]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sorted(results.items()), errors)
"""


def test_two_steps_loading_magics_at_once_each_get_their_own(tmp_path: Path) -> None:
    (tmp_path / "slow_a.py").write_text(MAGICS_MODULE.format(cls="SlowA", name="a"))
    (tmp_path / "slow_b.py").write_text(MAGICS_MODULE.format(cls="SlowB", name="b"))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('a', 'a1'), ('b', 'b1')] []", done.stdout
