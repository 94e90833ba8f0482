"""WASM steps: a WASI command module run in-process by wasmtime, sandboxed.

Guarantees:

- The guest sees no filesystem and no network; only the directories listed in
  ``allow_dirs`` are opened to it (WASI preopens, at the same path). It gets no
  environment variables and no arguments but its module name.
- ``input`` is given as JSON on stdin (None gives an empty stdin); the output
  is the JSON the guest printed on stdout. Its stderr streams into the log.
- What a guest can allocate is bounded in total, not per object: its store
  holds one instance with one linear memory of at most ``memory_limit_mb``,
  and at most :data:`MAX_TABLES` tables of :func:`table_elements` entries each
  (an eighth of ``memory_limit_mb`` in all). A module that declares more fails
  the attempt when it is instantiated, naming the limit; a ``memory.grow`` or
  ``table.grow`` past a limit returns -1 to the guest, as the spec says. The GC
  proposal is off: its heap would lie outside these limits.
- A guest cannot outlive its attempt: each call has its own wasmtime engine
  with epoch interruption and a deadline of one tick. The tick comes from a
  timer at the step's ``timeout``, or from the engine's cancel of the attempt;
  either way the guest traps at its next loop back-edge or call.
- A trap, a non-zero ``proc_exit``, a missing module, or stdout that is not
  one JSON value fail the attempt with a message that says which.

A missing module is reported when the step runs, not when it is defined: an
upstream step may build the module. A bare name such as ``"wordcount"`` (no
directory, no suffix) names a skill shipped in ``flownb/skills/``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import wasmtime

from flownb.engine.context import StepContext
from flownb.errors import FlowDefinitionError
from flownb.model import templates
from flownb.steps.registry import register_kind

SKILLS = Path(__file__).resolve().parent.parent / "skills"
SUFFIXES = (".wasm", ".wat")
MAX_STDOUT = 10 * 1024 * 1024
STDERR_TAIL = 2000
#: tables a guest may have (C, Rust and Zig toolchains emit one, for indirect calls)
MAX_TABLES = 2
#: bytes a table entry may take (a funcref is one pointer; leave room for wider ones)
TABLE_ENTRY_BYTES = 16
#: seconds to wait for a guest to stop after its epoch was bumped (a host call
#: such as a WASI sleep is not interruptible); past that the thread is abandoned
STOP_GRACE = 5.0


class WasmError(Exception):
    """A guest failed; ``retryable`` is False when running again cannot help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def table_elements(memory_mb: int) -> int:
    """Entries a guest's table may hold: all tables together take at most an eighth
    of ``memory_mb`` (4,096 entries at least, for the smallest limits)."""
    return max(4096, memory_mb * 1024 * 1024 // 8 // MAX_TABLES // TABLE_ENTRY_BYTES)


def limits(memory_mb: int) -> str:
    """The limits a guest runs under, as error messages state them."""
    return (
        f"one linear memory of at most memory_limit_mb={memory_mb}, at most {MAX_TABLES} tables of "
        f"{table_elements(memory_mb)} entries, one instance"
    )


def limited_store(engine: wasmtime.Engine, memory_mb: int) -> wasmtime.Store:
    """A store whose guest cannot allocate past :func:`limits` in total.

    wasmtime's ``memory_size`` and ``table_elements`` bound *each* memory and
    table; the counts (one memory, :data:`MAX_TABLES` tables, one instance) are
    what make the sum bounded: nine memories of 60 MB each would otherwise all fit.
    """
    store = wasmtime.Store(engine)
    store.set_limits(
        memory_size=memory_mb * 1024 * 1024, table_elements=table_elements(memory_mb),
        instances=1, tables=MAX_TABLES, memories=1,
    )  # fmt: skip
    return store


def skill_path(name: str) -> Path:
    """The path of a skill shipped with flownb (``wordcount``, ``echo``)."""
    return SKILLS / f"{name}.wat"


class WasmKind:
    name = "wasm"
    main_option: str | None = "module"
    required: tuple[str, ...] = ("module",)
    optional: Mapping[str, Any] = {"input": None, "memory_limit_mb": 64, "allow_dirs": ()}

    def references(self, options: Mapping[str, Any]) -> set[str]:
        refs = templates.value_references(str(options.get("module") or ""))
        return refs | templates.value_references(options.get("input")) | templates.value_references(
            [str(d) for d in options.get("allow_dirs") or ()]
        )

    def validate(self, step: str, options: dict[str, Any]) -> None:
        where = f"step {step!r} (wasm)"
        module = options.get("module")
        if not isinstance(module, str | os.PathLike) or not str(module).strip():
            raise FlowDefinitionError(f"{where}: module must be the path of a .wasm or .wat file")
        text = str(module)
        if not templates.is_template(text) and not _is_skill_name(text) and Path(text).suffix not in SUFFIXES:
            raise FlowDefinitionError(f"{where}: module {text!r} must end in .wasm or .wat")
        mb = options.get("memory_limit_mb")
        if not isinstance(mb, int) or isinstance(mb, bool) or not 1 <= mb <= 4096:
            raise FlowDefinitionError(f"{where}: memory_limit_mb must be an integer from 1 to 4096")
        dirs = options.get("allow_dirs")
        if isinstance(dirs, str | os.PathLike) or not all(isinstance(d, str | os.PathLike) for d in dirs or ()):
            raise FlowDefinitionError(f"{where}: allow_dirs must be a list of directory paths")
        try:
            json.dumps(options.get("input"))
        except (TypeError, ValueError):
            raise FlowDefinitionError(f"{where}: input must be JSON-able (dicts, lists, str, numbers)") from None

    async def execute(self, ctx: StepContext) -> Any:
        o = ctx.options
        path = _resolve(ctx, str(ctx.render(os.fspath(o["module"]))))
        data = ctx.render(o["input"]) if o["input"] is not None else None
        dirs = [str(Path(str(ctx.render(os.fspath(d)))).resolve()) for d in o["allow_dirs"] or ()]
        for d in dirs:
            if not os.path.isdir(d):
                raise WasmError(f"step {ctx.step!r}: allow_dirs entry {d!r} is not a directory", retryable=False)
        try:
            stdin = b"" if data is None else json.dumps(data).encode()
        except (TypeError, ValueError) as exc:
            raise WasmError(f"step {ctx.step!r}: input is not JSON-able: {exc}", retryable=False) from None
        ctx.recorded_inputs = {"module": str(path), "input_bytes": len(stdin), "allow_dirs": dirs,
                               "memory_limit_mb": o["memory_limit_mb"]}  # fmt: skip
        out = await run_guest(ctx, path, stdin, dirs, o["memory_limit_mb"])
        text = out.decode("utf-8", "replace").strip()
        if not text:
            raise WasmError(f"step {ctx.step!r}: the guest {path.name} printed nothing on stdout; it must print "
                            "one JSON value", retryable=False)  # fmt: skip
        try:
            return json.loads(text)
        except ValueError as exc:
            raise WasmError(
                f"step {ctx.step!r}: the guest {path.name} printed invalid JSON on stdout ({exc}): {text[:200]!r}",
                retryable=False,
            ) from None


async def run_guest(ctx: StepContext, path: Path, stdin: bytes, dirs: list[str], memory_mb: int) -> bytes:
    """Run the module's ``_start`` in a worker thread; stop it by epoch on timeout or cancel."""
    loop = asyncio.get_running_loop()
    engine = wasmtime.Engine(_config())
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail: list[str] = []

    def on_stderr(chunk: bytes) -> None:  # called in the worker thread
        text = decoder.decode(chunk)
        tail.append(text)
        loop.call_soon_threadsafe(ctx.print, text, "stderr")

    stopped = threading.Event()  # set when the epoch was bumped on purpose

    def stop() -> None:
        stopped.set()
        engine.increment_epoch()

    timer = loop.call_later(ctx.timeout, stop) if ctx.timeout else None
    future = _pool().submit(
        _run, engine, path, stdin=stdin, dirs=dirs, memory_mb=memory_mb, on_stderr=on_stderr, stopped=stopped
    )
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        stop()
        after = asyncio.wrap_future(future)
        with contextlib.suppress(BaseException):
            await asyncio.wait({after}, timeout=STOP_GRACE)
        if after.done() and not after.cancelled():
            after.exception()  # the trap it ended with is this cancel: nothing else to report
        raise
    except wasmtime.ExitTrap as exc:
        raise WasmError(f"step {ctx.step!r}: the guest {path.name} exited with code {exc.code}"
                        f"{_stderr(tail)}") from None  # fmt: skip
    except _OverLimits as exc:
        raise WasmError(f"step {ctx.step!r}: {exc}", retryable=False) from None
    except (wasmtime.Trap, wasmtime.WasmtimeError, _Stopped) as exc:
        if stopped.is_set():
            raise WasmError(f"step {ctx.step!r}: the guest {path.name} was stopped at the step's timeout "
                            f"({ctx.timeout:g}s)") from None  # fmt: skip
        message = exc.message if isinstance(exc, wasmtime.Trap) else str(exc)  # (_Stopped implies stopped)
        raise WasmError(f"step {ctx.step!r}: the guest {path.name} trapped: {message.strip()}{_stderr(tail)}",
                        retryable=False) from None  # fmt: skip
    finally:
        if timer is not None:
            timer.cancel()


_guests_lock = threading.Lock()
_guests = 0


def running_guests() -> int:
    """How many guests are executing in this process now (a stopped guest has left)."""
    with _guests_lock:
        return _guests


class _Stopped(Exception):
    """The attempt was stopped before its guest started."""


class _OverLimits(Exception):
    """The module declares more memories, tables or memory than its store allows."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _run(engine: wasmtime.Engine, path: Path, *, stdin: bytes, dirs: list[str], memory_mb: int,
         on_stderr: Callable[[bytes], None], stopped: threading.Event) -> bytes:  # fmt: skip
    """The worker thread's part: instantiate and run; returns stdout (raises traps)."""
    global _guests
    with _guests_lock:
        _guests += 1
    try:
        return _instantiate_and_start(engine, path, stdin=stdin, dirs=dirs, memory_mb=memory_mb,
                                      on_stderr=on_stderr, stopped=stopped)  # fmt: skip
    finally:
        with _guests_lock:
            _guests -= 1


def _instantiate_and_start(engine: wasmtime.Engine, path: Path, *, stdin: bytes, dirs: list[str], memory_mb: int,
                           on_stderr: Callable[[bytes], None], stopped: threading.Event) -> bytes:  # fmt: skip
    module = wasmtime.Module.deserialize(engine, _compiled(path))
    out = bytearray()

    def on_stdout(chunk: bytes) -> int:
        if len(out) + len(chunk) > MAX_STDOUT:
            return -5  # EIO: the guest sees a failed write
        out.extend(chunk)
        return len(chunk)

    with tempfile.NamedTemporaryFile(prefix="flownb-wasm-stdin-") as f:
        f.write(stdin)
        f.flush()
        wasi = wasmtime.WasiConfig()
        wasi.argv = [path.name]
        wasi.stdin_file = f.name
        wasi.stdout_custom = on_stdout
        wasi.stderr_custom = on_stderr
        for d in dirs:
            wasi.preopen_dir(d, d)
        store = limited_store(engine, memory_mb)
        store.set_epoch_deadline(1)
        # the deadline is relative to the epoch *now*: a stop that bumped the epoch
        # before this line would be missed, so it is checked after (stop sets the
        # flag before it bumps, hence no gap)
        if stopped.is_set():
            raise _Stopped
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        try:
            instance = linker.instantiate(store, module)
        except wasmtime.Trap:  # a start function that trapped: the guest's own failure
            raise
        except wasmtime.WasmtimeError as exc:
            cause = _first_line(exc)
            if "count too high" in cause:  # more memories, tables or instances: no limit to raise
                fix = "build the module with one memory and at most that many tables"
            else:
                fix = "raise memory_limit_mb if it needs more memory"
            raise _OverLimits(
                f"the guest {path.name} does not fit its limits ({limits(memory_mb)}): {cause}; {fix}"
            ) from None
        start = instance.exports(store).get("_start")
        if not isinstance(start, wasmtime.Func):
            raise wasmtime.WasmtimeError(f"{path.name} exports no _start function (it must be a WASI command)")
        try:
            start(store)
        except wasmtime.ExitTrap as exc:
            if exc.code != 0:
                raise
    return bytes(out)


def _config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    # GC objects live in a heap of their own, which the store's limits do not bound
    config.wasm_gc = False
    return config


_compile_lock = threading.Lock()
_compile_engine: wasmtime.Engine | None = None
_cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
_CACHE_SIZE = 32


def _compiled(path: Path) -> bytes:
    """The module compiled once per (path, mtime, size); engines share the artifact."""
    global _compile_engine
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _compile_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
        if _compile_engine is None:
            _compile_engine = wasmtime.Engine(_config())
        engine = _compile_engine
    raw = path.read_bytes()
    try:
        source: str | bytes = raw.decode("utf-8") if path.suffix == ".wat" else raw
        artifact = bytes(wasmtime.Module(engine, source).serialize())
    except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
        raise WasmError(f"the module {path} does not compile: {str(exc).strip()}", retryable=False) from None
    with _compile_lock:
        _cache[key] = artifact
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return artifact


_pool_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _pool_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="flownb-wasm")
        return _executor


def _is_skill_name(text: str) -> bool:
    return "/" not in text and os.sep not in text and not Path(text).suffix


def _resolve(ctx: StepContext, text: str) -> Path:
    path = skill_path(text) if _is_skill_name(text) and skill_path(text).exists() else Path(text).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SKILLS.glob("*.wat")))
        raise WasmError(
            f"step {ctx.step!r}: the module {text!r} does not exist (looked at {path.resolve()}); "
            f"give the path of a .wasm or .wat file, or a shipped skill ({known})",
            retryable=False,
        )
    return path.resolve()


def _stderr(tail: list[str]) -> str:
    text = "".join(tail).strip()
    return f"; its stderr ends with: {text[-STDERR_TAIL:]}" if text else ""


register_kind(WasmKind())
