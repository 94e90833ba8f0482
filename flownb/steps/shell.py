"""Shell steps: the body is a bash script, run in its own process group.

Guarantees:

- A value a template inserts never becomes shell syntax, in any quoting
  context: each ``{{ ... }}`` is rendered as a reference to an environment
  variable holding the value (``"${FLOWNB_ARG_1}"``, in the form its quotes,
  heredoc or ``$(...)`` need), so ``{{ params.name }}`` holding
  ``'; rm -rf ~; '`` is that text, even inside ``'...'``. A template where no
  reference can be data (inside ``${...}``, after ``eval``...) is refused when
  the step is defined; see :mod:`flownb.steps.shell_template`. Use templates
  for values, never to build shell syntax.
- The script runs as ``bash --noprofile --norc -eo pipefail -c SCRIPT`` (as in
  GitHub Actions): the first failing command fails the step. ``set +e`` opts out.
- stdout and stderr stream into the step's log as they arrive. Secret values
  (secret-looking params, ``env=`` entries and environment variables) are
  scrubbed from the recorded log, values and errors; the step's output is data
  and is stored as it is.
- The script runs in a new session (its own process group). When the attempt
  ends (exit, failure, timeout or cancel) the whole group is stopped: SIGTERM,
  then SIGKILL after a short grace, so no child outlives its step.
- A non-zero exit fails the attempt with the exit status and the tail of stderr.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Any

from flownb.engine.context import StepContext, redact_headers
from flownb.errors import FlowDefinitionError, TemplateError
from flownb.model import templates
from flownb.steps.registry import register_kind
from flownb.steps.shell_template import ShellTemplateError, ShellValueError, compile_command

#: the interpreter and flags every script runs under
BASH = ("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c")
#: output kept in the step's result per stream; the log keeps its own cap
MAX_CAPTURE = 10 * 1024 * 1024
#: seconds between SIGTERM and SIGKILL when a step is stopped
KILL_GRACE = 2.0
STDERR_TAIL_LINES = 20


class ShellError(Exception):
    """A script exited with a non-zero status (retryable under the step's policy)."""

    def __init__(self, message: str, returncode: int, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.returncode = returncode
        #: read by the engine's retry policy: False when running again cannot help
        self.retryable = retryable


class ShellKind:
    name = "shell"
    main_option: str | None = "command"
    required: tuple[str, ...] = ("command",)
    optional: Mapping[str, Any] = {"env": None, "cwd": None}

    def references(self, options: Mapping[str, Any]) -> set[str]:
        refs = templates.value_references(options.get("command") or "")
        refs |= templates.value_references(options.get("env") or {})
        return refs | templates.value_references(options.get("cwd") or "")

    def validate(self, step: str, options: dict[str, Any]) -> None:
        if not isinstance(options.get("command"), str) or not options["command"].strip():
            raise FlowDefinitionError(f"step {step!r}: command must be a non-empty bash script (a string)")
        if templates.is_template(options["command"]):
            try:
                compile_command(options["command"])
            except ShellTemplateError as exc:
                raise FlowDefinitionError(f"step {step!r} (shell): {exc}") from None
        env = options.get("env")
        if env is not None and (
            not isinstance(env, Mapping) or not all(isinstance(k, str) for k in env)
        ):
            raise FlowDefinitionError(f"step {step!r}: env must be a dict of variable name -> value")
        cwd = options.get("cwd")
        if cwd is not None and not isinstance(cwd, str | os.PathLike):
            raise FlowDefinitionError(f"step {step!r}: cwd must be a path")

    async def execute(self, ctx: StepContext) -> Any:
        script, args = render_command(ctx, ctx.options["command"])
        # env values and cwd are not parsed by the shell: rendered as plain values
        extra = {k: str(ctx.render(v)) for k, v in (ctx.options.get("env") or {}).items()}
        cwd = ctx.options.get("cwd")
        cwd = str(ctx.render(os.fspath(cwd))) if cwd is not None else None
        ctx.secrets.add_named(extra)  # a secret env= value is scrubbed from the log and errors too
        ctx.recorded_inputs = {"command": script, "args": args or None, "env": redact_headers(extra), "cwd": cwd}
        if cwd is not None and not os.path.isdir(cwd):
            raise ShellError(f"step {ctx.step!r}: cwd {cwd!r} is not a directory", -1, retryable=False)
        # the values last: a user's env= cannot replace the value a reference stands for
        return await run_script(ctx, script, {**os.environ, **extra, **args}, cwd)


def render_command(ctx: StepContext, command: str) -> tuple[str, dict[str, str]]:
    """The script to run and the variables holding its values (see shell_template)."""
    if not templates.is_template(command):
        return command, {}
    with templates.explained("template", command):
        try:
            return compile_command(command).render(ctx.scope)
        except ShellTemplateError as exc:  # refused at definition; a definition made before this check
            raise TemplateError(f"step {ctx.step!r}: {exc}") from None
        except ShellValueError as exc:
            raise ShellError(f"step {ctx.step!r}: {exc}", -1, retryable=False) from None


async def run_script(ctx: StepContext, script: str, env: dict[str, str], cwd: str | None) -> dict[str, Any]:
    """Run ``script``, streaming its output to the log; stop its group on any exit."""
    proc = await asyncio.create_subprocess_exec(
        *BASH, script, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd, start_new_session=True,
    )  # fmt: skip
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    pumps = asyncio.gather(_pump(proc.stdout, "stdout", out, ctx), _pump(proc.stderr, "stderr", err, ctx))
    try:
        await _exited(proc)
    except BaseException:  # timeout or cancel: stop everything, keep nothing waiting
        await _stop_group(proc)
        pumps.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumps
        raise
    # children the script left in the background would hold the pipes open
    await _stop_group(proc)
    await pumps
    code = proc.returncode
    assert code is not None
    stdout, stderr = "".join(out), "".join(err)
    if code != 0:
        raise ShellError(f"step {ctx.step!r}: command {_status(code)}{_tail(stderr)}", code)
    return {"returncode": code, "stdout": stdout, "stderr": stderr}


async def _pump(reader: asyncio.StreamReader, stream: str, kept: list[str], ctx: StepContext) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    size = 0
    while True:
        chunk = await reader.read(65536)
        text = decoder.decode(chunk, final=not chunk)
        if text:
            ctx.print(text, stream)
            if size < MAX_CAPTURE:
                kept.append(text[: MAX_CAPTURE - size])
                size += len(kept[-1])
                if size >= MAX_CAPTURE:
                    kept.append("\n[... truncated]")
        if not chunk:
            return


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Wait for the script itself to exit.

    Not ``proc.wait()``: asyncio completes that only once the pipes are closed
    too, which a background child holding them would postpone forever. A pidfd
    becomes readable when the process exits, without reaping it.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return  # already exited and reaped
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): pipes decide
        await proc.wait()
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the script's process group, SIGKILL it after a grace period."""
    pgid = proc.pid  # start_new_session: the script leads its own group
    if not _signal_group(pgid, signal.SIGTERM) and proc.returncode is not None:
        return
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.shield(asyncio.wait_for(proc.wait(), KILL_GRACE))
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(proc.wait())


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _tail(stderr: str) -> str:
    lines = stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:]
    return "; stderr ends with:\n" + "\n".join(lines) if lines else " (stderr was empty)"


register_kind(ShellKind())
