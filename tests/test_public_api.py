"""The curated public surface (STYLE: one curated public surface, one error tree).

``flownb.__all__`` is sorted and complete, every name in it imports from ``flownb`` and
says what it is; the errors form the one tree ``flownb/errors.py`` draws, each with its
own stable ``code``; the version has one source, ``pyproject.toml``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

import flownb
import flownb.errors

ROOT = Path(__file__).parents[1]
ERRORS = [
    cls
    for cls in vars(flownb.errors).values()
    if isinstance(cls, type) and issubclass(cls, BaseException) and cls.__module__ == "flownb.errors"
]


def test_all_is_sorted_without_duplicates() -> None:
    assert flownb.__all__ == sorted(set(flownb.__all__))


@pytest.mark.parametrize("name", flownb.__all__)
def test_every_public_name_imports_from_flownb(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from flownb import {name}", namespace)  # what a user writes
    value = namespace[name]
    assert inspect.isclass(value) or inspect.isfunction(value), f"{name} is {value!r}"
    assert value.__module__.startswith("flownb"), f"{name} comes from {value.__module__}"


def test_all_lists_every_public_name() -> None:
    # a name imported into flownb/__init__.py without __all__ would be public by accident;
    # submodules are attributes once imported, and are internal
    public = {n for n, v in vars(flownb).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public == set(flownb.__all__)


@pytest.mark.parametrize("name", flownb.__all__)
def test_every_public_name_has_a_docstring(name: str) -> None:
    value = getattr(flownb, name)
    # a class's own docstring, not one inherited from Exception or object
    doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
    assert doc and doc.strip(), f"flownb.{name} has no docstring"


def test_errors_form_one_tree_under_flownb_error() -> None:
    assert len(ERRORS) >= 10
    for error in ERRORS:
        assert issubclass(error, flownb.FlownbError), f"{error.__name__} is outside the tree"
        assert len(error.__bases__) == 1, f"{error.__name__} has several parents: one tree, one path to the root"


def test_every_error_has_its_own_unique_code() -> None:
    codes: dict[str, str] = {}
    for error in ERRORS:
        # its own, not inherited: catching by code must tell a StepTimeout from a StepFailed
        assert "code" in error.__dict__, f"{error.__name__} inherits its code"
        assert re.fullmatch(r"[a-z][a-z_]*", error.code), error.code
        assert error.code not in codes, f"{error.__name__} and {codes[error.code]} share the code {error.code!r}"
        codes[error.code] = error.__name__


def test_every_error_is_public() -> None:
    # users import from flownb only: an error they cannot import they cannot catch
    assert {e.__name__ for e in ERRORS} <= set(flownb.__all__)


def test_the_drawn_error_tree_is_the_real_one() -> None:
    """flownb/errors.py draws the tree in its docstring; the drawing must match the classes."""
    drawn: dict[str, str | None] = {}
    parents: list[str] = []  # the chain of names above the current line, by depth
    for line in (flownb.errors.__doc__ or "").splitlines():
        match = re.match(r"^ {4}((?:[│ ] {3})*)(?:[├└]── )?([A-Z]\w+)", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        name = match.group(2)
        del parents[depth:]
        drawn[name] = parents[-1] if parents else None
        parents.append(name)
    real = {e.__name__: (e.__bases__[0].__name__ if e is not flownb.FlownbError else None) for e in ERRORS}
    assert drawn == real


def test_the_version_has_one_source() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # a mismatch means the installed metadata is stale: reinstall with pip install -e .
    assert flownb.__version__ == importlib.metadata.version("flownb") == declared
    assert '__version__ = "' not in (ROOT / "flownb" / "__init__.py").read_text()


def test_no_module_imports_an_extra_at_import_time() -> None:
    # matplotlib (examples) and dask (dask) are extras: every module must import without them,
    # reaching for them lazily where a step drew with pyplot or a flow runs on a cluster
    code = (
        "import importlib, pkgutil, sys, flownb\n"
        "for m in pkgutil.walk_packages(flownb.__path__, 'flownb.'): importlib.import_module(m.name)\n"
        "print(sorted(m for m in ('matplotlib', 'dask', 'distributed') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
