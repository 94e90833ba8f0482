"""Reduce a notebook namespace to picklable fingerprints, in the process that owns it.

The harness (tests/notebook/notebook_runs.py) injects this file into a kernel with
``runpy.run_path`` after the notebook's last cell, and runs it as the driver of
``flownb run`` in a subprocess, so the three runs of a notebook are fingerprinted by
the same code. It imports only the standard library at module level: a notebook that
never imported numpy or pandas is not made to.

A fingerprint is a tuple whose first item is its kind:

    ("value", type, v)            None, bool, int, str, bytes (exact)
    ("float", type, repr)         float and complex: repr round-trips, NaN equals NaN
    ("list"|"tuple", type, [fp])  recursively; namedtuples keep their type name
    ("set", type, [fp])           sorted by repr: set order is not a value
    ("dict", type, [(kfp, vfp)])  dicts and their subclasses (Counter, Bunch...)
    ("ndarray", dtype, shape, bytes)       numeric arrays, bit for bit
    ("ndarray-object", shape, [fp])        object arrays, item by item
    ("npscalar", dtype, bytes)
    ("pandas", type, pickled, summary)     DataFrame, Series, Index, extension arrays
    ("module", name)  ("function", qualname)  ("class", qualname)
    ("object", type, fp of its __dict__)   instances pickled by their __dict__
    ("reduce", type, [fp], repr)           anything else pickle can store: what its
                                           __reduce_ex__ returns (callable, args, state...)
    ("global", type, name)                 objects pickled by reference
    ("type", type)                         matplotlib objects, generators, what pickle cannot store
    ("cycle", type)  ("deep", type)  ("error", type, message)
"""

from __future__ import annotations

import copyreg
import pickle
import sys
from typing import Any

MAX_DEPTH = 24
REPR_CHARS = 160
SKIP = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def user_names(shell: Any) -> dict[str, Any]:
    """The user's names: not ``_private``, not IPython's own, not untouched fresh-namespace names."""
    hidden = getattr(shell, "user_ns_hidden", {})
    names = {}
    for name, value in list(shell.user_ns.items()):
        if name.startswith("_") or name in SKIP:
            continue
        if name in hidden and hidden[name] is value:
            continue  # e.g. IPython's `open`: there in a fresh kernel, not the user's
        names[name] = value
    return names


def collect(shell: Any) -> dict[str, tuple[Any, ...]]:
    out = {}
    for name, value in sorted(user_names(shell).items()):
        try:
            out[name] = fingerprint(value)
        except Exception as exc:  # noqa: BLE001  (one odd value must not hide the others)
            out[name] = ("error", _tname(value), f"{type(exc).__name__}: {exc}")
    return out


def dump(shell: Any, path: str, **extra: Any) -> None:
    """Write ``{"values": {name: fingerprint}, **extra}`` to ``path`` (pickle)."""
    payload = {"values": collect(shell), **extra}
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)


def _tname(value: Any) -> str:
    t = type(value)
    mod = t.__module__
    return t.__qualname__ if mod in ("builtins", "__main__") else f"{mod}.{t.__qualname__}"


def _qualname(obj: Any) -> str:
    mod = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{mod}.{name}"


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001
        return f"<repr failed: {type(exc).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 3] + "..."


def fingerprint(value: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> tuple[Any, ...]:
    import types

    t = type(value)
    tname = _tname(value)
    if value is None or t in (bool, int, str, bytes):
        return ("value", tname, value)
    if t in (float, complex):
        return ("float", tname, repr(value))
    if _depth > MAX_DEPTH:
        return ("deep", tname)
    if id(value) in _seen:
        return ("cycle", tname)
    seen = _seen | {id(value)}

    def sub(v: Any) -> tuple[Any, ...]:
        return fingerprint(v, _depth + 1, seen)

    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, type):
        return ("class", _qualname(value))
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        return ("function", _qualname(value))
    if callable(value) and hasattr(value, "__wrapped__") and hasattr(value, "__qualname__"):
        return ("function", _qualname(value))  # a decorated function (functools.lru_cache...)
    if isinstance(value, types.GeneratorType | types.CoroutineType | types.AsyncGeneratorType):
        return ("type", tname)
    if t.__module__.split(".")[0] == "matplotlib":
        return ("type", tname)

    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame | pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
        try:
            blob: bytes | None = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001  (an object column holding something unpicklable)
            blob = None
        return ("pandas", tname, blob, _pandas_summary(value))
    if np is not None and isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return ("ndarray-object", value.shape, [sub(v) for v in value.ravel(order="C")])
        return ("ndarray", value.dtype.str, value.shape, np.ascontiguousarray(value).tobytes())
    if np is not None and isinstance(value, np.generic) and not value.dtype.hasobject:
        return ("npscalar", value.dtype.str, value.tobytes())

    if isinstance(value, dict):
        return ("dict", tname, [(sub(k), sub(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return ("list" if isinstance(value, list) else "tuple", tname, [sub(v) for v in value])
    if isinstance(value, set | frozenset):
        return ("set", tname, sorted((sub(v) for v in value), key=repr))

    if hasattr(value, "__dict__") and (t.__module__ == "__main__" or _pickles_by_dict(t)):
        state = value.__getstate__() if t.__getstate__ is not object.__getstate__ else vars(value)
        return ("object", tname, sub(state))
    # what pickle would store, as a structure: the bytes themselves depend on which equal
    # objects happen to be shared (pickle's memo), so they differ between equal values
    reducer = copyreg.dispatch_table.get(t)
    try:
        rv = reducer(value) if reducer is not None else value.__reduce_ex__(4)
    except Exception:  # noqa: BLE001  (a lock, an open file, a connection: its type is all we can say)
        return ("type", tname)
    if isinstance(rv, str):
        return ("global", tname, rv)
    parts = [*rv, None, None, None, None][:5]
    for i in (3, 4):  # list and dict items come as iterators
        if parts[i] is not None:
            parts[i] = list(parts[i])
    return ("reduce", tname, [sub(part) for part in parts], _short_repr(value))


def _pickles_by_dict(t: type) -> bool:
    """The class keeps the default pickling, whose state is the instance's __dict__ (sklearn's estimators)."""
    return t.__reduce_ex__ is object.__reduce_ex__ and t.__reduce__ is object.__reduce__


def _pandas_summary(value: Any) -> str:
    pd = sys.modules["pandas"]
    kind = type(value).__name__
    if isinstance(value, pd.DataFrame):
        dtypes = ", ".join(f"{c!r}: {d}" for c, d in list(value.dtypes.items())[:12])
        more = ", ..." if value.shape[1] > 12 else ""
        text = (f"{kind} {value.shape[0]}x{value.shape[1]} index={type(value.index).__name__}"
                f"{list(value.index.names)} dtypes={{{dtypes}{more}}}")  # fmt: skip
    elif isinstance(value, pd.Series):
        text = f"{kind} len={len(value)} name={value.name!r} dtype={value.dtype} index={type(value.index).__name__}{list(value.index.names)}"
    elif isinstance(value, pd.Index):
        text = f"{type(value).__name__} len={len(value)} dtype={value.dtype} names={list(value.names)}"
    else:
        text = f"{kind} len={len(value)} dtype={value.dtype}"
    attrs = getattr(value, "attrs", None)
    if attrs:
        text += f" attrs={_short_repr(attrs)}"
    return text


def cli_main(argv: list[str]) -> None:
    """Run ``flownb run NOTEBOOK --db DB`` in this process, then fingerprint what it left.

    ``argv`` is ``[notebook, db, out]``. The values come from the IPython shell the CLI
    used (``InteractiveShell.instance()``), so they are exactly what ``flownb run`` left
    in the notebook namespace. The exit status is written beside them.
    """
    notebook, db, out = argv
    sys.argv = ["flownb", "run", notebook, "--db", db]
    from flownb.cli import main

    try:
        code: Any = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        code = f"crashed: {type(exc).__name__}: {exc}"
    sys.stdout.flush()
    sys.stderr.flush()
    from IPython.core.interactiveshell import InteractiveShell

    dump(InteractiveShell.instance(), out, exit_code=code)
