"""Reading a notebook file: every way it can be broken becomes one line.

:func:`read_notebook` is the one door through which flownb reads an ``.ipynb``
file (``flownb run`` and the cell layer). It guarantees that whatever the
file holds (nothing, random bytes, JSON that is not a notebook, a notebook
that fails nbformat's schema), the caller gets either a valid version-4
``NotebookNode`` or a :class:`NotebookFileError` whose message is one line
naming the file, what is wrong with it, and what to do; never a traceback
from json, nbformat or jsonschema.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, NoReturn

from flownb.errors import NotebookFileError

__all__ = ["NotebookFileError", "read_notebook"]

#: how much of a bad value or message to quote in the one line
_QUOTE = 80


def read_notebook(path: str | os.PathLike[str]) -> Any:
    """The notebook at ``path``, as a validated nbformat version-4 ``NotebookNode``.

    Raises :class:`NotebookFileError` (one line: the file, the fault, the fix)
    when the file cannot be read, is empty, is not UTF-8, is not JSON, is JSON
    but not a notebook, has an nbformat version nbformat cannot read, or does
    not pass nbformat's validator (``"source": 5``, no ``cells``...).
    Older versions (3, and 4.x without cell ids) are upgraded as Jupyter does.
    A version-4 notebook whose cells are plainly well formed is read without
    nbformat, whose import alone costs about a second (``flownb run`` pays it
    otherwise on every start).
    """
    name = os.fspath(path)

    def fail(what: str, fix: str = "open it in Jupyter and save it again, or pass another notebook") -> NoReturn:
        raise NotebookFileError(f"notebook {name}: {_one_line(what)}; {fix}")

    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        fail(f"cannot be read ({exc.strerror or type(exc).__name__})", "check the path and its permissions")
    if not raw.strip():
        fail("is empty", "a notebook is a JSON file; save it from Jupyter first")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(f"is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})",
             "a notebook is a UTF-8 JSON file: is this one really a notebook?")  # fmt: skip
    try:
        data = json.loads(text)
    except RecursionError:
        fail("is JSON nested too deeply to be a notebook")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        fail(f"is not JSON ({getattr(exc, 'msg', exc)}{where})")
    if not isinstance(data, dict):
        fail(f"is JSON but not a notebook: it holds {_kind(data)}, not an object with 'cells'")
    quick = _plain_v4(data)
    if quick is not None:
        return quick
    import nbformat  # a second and more (its validator loads jsonschema): only for notebooks that need it

    version = data.get("nbformat")
    if not isinstance(version, int) or isinstance(version, bool):
        fail(f"is JSON but not a notebook: it has no integer 'nbformat' version (found {_quote(version)})")
    if version not in nbformat.versions:
        known = ", ".join(str(v) for v in sorted(nbformat.versions))
        fail(f"has nbformat version {version}, which this nbformat cannot read (it reads {known})",
             "upgrade nbformat, or save the notebook from a matching Jupyter")  # fmt: skip
    try:
        with warnings.catch_warnings():
            # nbformat warns (and fixes the file in memory) for cells without ids: a
            # notebook saved by an older Jupyter is still a notebook
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        fail(f"is not a valid notebook: {_validation_message(exc)}")
    except RecursionError:
        fail("is nested too deeply to be a notebook")
    except Exception as exc:  # noqa: BLE001  (nbformat's converters raise anything on odd input)
        fail(f"is not a valid notebook: {type(exc).__name__}: {exc}")
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        fail("is not a valid notebook: it has no list of cells")
    return nb


class Node(dict[str, Any]):
    """A notebook or cell read without nbformat: a dict whose keys are also attributes, as nbformat's."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_CELL_TYPES = frozenset({"code", "markdown", "raw"})


def _plain_v4(data: dict[str, Any]) -> Node | None:
    """The notebook, when it is version 4 and every cell is plainly well formed; else None."""
    cells = data.get("cells")
    if data.get("nbformat") != 4 or not isinstance(cells, list) or not isinstance(data.get("metadata", {}), dict):
        return None
    out: list[Node] = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in _CELL_TYPES:
            return None
        source = cell.get("source")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str) or ("id" in cell and not isinstance(cell["id"], str)):
            return None
        out.append(Node({**cell, "source": source}))
    return Node({**data, "cells": out})


def _validation_message(exc: Any) -> str:
    """jsonschema's error in one line: where in the notebook, and what is wrong there."""
    message = getattr(exc, "message", None) or str(exc).splitlines()[0]
    path = list(getattr(exc, "absolute_path", None) or ())
    if not path:
        return str(message)
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))
    return f"{where}: {message}"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE else text[:_QUOTE] + "..."


def _one_line(text: str) -> str:
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    line = " ".join(parts)
    return line if len(line) <= 4 * _QUOTE else line[: 4 * _QUOTE] + "..."
