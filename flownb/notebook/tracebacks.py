"""A failed step's traceback as Jupyter shows a cell's error: the cell's lines, not flownb's.

The engine records a traceback as text (``traceback.format_exception``, secrets
scrubbed). This module turns it into the ``error`` output a notebook renders: the
frames of flownb itself are dropped (they say how the step was called, which
the user did not write), a cell step's frame (file ``<step NAME>``, registered in
:mod:`linecache` by the cell layer) is shown as ``Cell step NAME, line N`` with
the lines around it and an arrow at the failing one, other frames keep their
file and line, and the exception line ends it, in IPython's colours.
"""

from __future__ import annotations

import linecache
import os
import re
from dataclasses import dataclass, field

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # flownb/
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_STEP_FILE = re.compile(r"^<step (?P<step>.+)>$")
_CHAINS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)
CONTEXT = 2  # lines shown before and after a cell's failing line

RED, GREEN, CYAN, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[36m", "\x1b[1m", "\x1b[0m"


@dataclass
class _Frame:
    file: str
    line: int
    func: str
    source: list[str] = field(default_factory=list)  # the lines format_exception printed under it


@dataclass
class _Section:
    frames: list[_Frame] = field(default_factory=list)
    exception: list[str] = field(default_factory=list)
    cause: str = ""  # the sentence that joined it to the next one


def error_output(text: str | None, error_type: str | None, error: str | None) -> dict[str, object]:
    """The Jupyter ``error`` output of a failed step (``traceback`` may be missing: then the line alone)."""
    ename = error_type or "Error"
    evalue = error or ""
    lines = jupyter_traceback(text) if text else []
    if not lines:
        lines = [f"{RED}{ename}{RESET}: {evalue}"]
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": lines}


def jupyter_traceback(text: str) -> list[str]:
    """IPython-style traceback entries (ANSI-coloured) from a ``format_exception`` text."""
    sections = _parse(text)
    out: list[str] = []
    for i, section in enumerate(sections):
        name = section.exception[0].split(":", 1)[0] if section.exception else "Error"
        out.append(f"{RED}{'-' * 75}{RESET}")
        out.append(f"{RED}{name}{RESET}{' ' * max(1, 42 - len(name))}Traceback (most recent call last)")
        for frame in section.frames:
            if not _is_ours(frame.file):
                out.append(_format_frame(frame))
        out.append(_format_exception(section.exception))
        if section.cause and i + 1 < len(sections):
            out.append(f"\n{section.cause}\n")
    return out


def _is_ours(file: str) -> bool:
    """A frame of flownb itself: under this package, also when the recorded path was scrubbed
    (a secret's value can be part of a path: ``[redacted]/flownb/executors/local.py``)."""
    if file.startswith("<"):
        return False
    if os.path.abspath(file).startswith(_PACKAGE_DIR):
        return True
    _, sep, rel = file.replace(os.sep, "/").rpartition("/flownb/")
    return bool(sep) and os.path.isfile(os.path.join(_PACKAGE_DIR, rel))


def _parse(text: str) -> list[_Section]:
    sections = [_Section()]
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        current = sections[-1]
        if line.strip() in _CHAINS:
            current.cause = line.strip()
            sections.append(_Section())
        elif line.startswith("Traceback (most recent call last)") or not line.strip():
            pass
        elif (m := _FRAME.match(line)) is not None:
            current.frames.append(_Frame(m["file"], int(m["line"]), m["func"] or ""))
        elif line.startswith("    ") and current.frames and not current.exception:
            current.frames[-1].source.append(line[4:])
        else:
            current.exception.append(line)
        i += 1
    return [s for s in sections if s.frames or s.exception]


def _format_frame(frame: _Frame) -> str:
    step = _STEP_FILE.match(frame.file)
    if step is not None:
        head = f"{GREEN}Cell step {step['step']}{RESET}, line {frame.line}"
    else:
        where = f", in {CYAN}{frame.func}{RESET}()" if frame.func and frame.func != "<module>" else ""
        head = f"{GREEN}File {frame.file}:{frame.line}{RESET}{where}"
    body = _context(frame)
    return head + ("\n" + "\n".join(body) if body else "")


def _context(frame: _Frame) -> list[str]:
    """The lines around the failing one, when the source is at hand; else what the text printed."""
    lines = linecache.getlines(frame.file)
    if lines and 0 < frame.line <= len(lines):
        out = []
        for n in range(max(1, frame.line - CONTEXT), min(len(lines), frame.line + CONTEXT) + 1):
            code = lines[n - 1].rstrip("\n")
            if n == frame.line:
                out.append(f"{GREEN}---> {n:<3}{RESET}{code}")
            else:
                out.append(f"     {n:<3}{code}")
        return out
    if frame.source:  # the first printed line is the code; carets (^^^) follow it
        return [f"{GREEN}---> {frame.line:<3}{RESET}{frame.source[0].strip()}"]
    return []


def _format_exception(lines: list[str]) -> str:
    if not lines:
        return ""
    name, sep, rest = lines[0].partition(":")
    first = f"{RED}{name}{RESET}{sep}{rest}" if sep else f"{RED}{lines[0]}{RESET}"
    return "\n".join([first, *lines[1:]])
