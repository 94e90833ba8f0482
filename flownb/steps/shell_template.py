"""Shell command templates whose values reach bash as data, never as shell syntax.

A value is never pasted into the script. Each ``{{ expression }}`` is rendered
as a reference to an environment variable (``FLOWNB_ARG_1``...) that holds the
value, written in the form the quoting context it stands in needs:

==================================  ============================================
where the template stands           what bash reads
==================================  ============================================
a bare word, ``$(...)``, backticks  ``"${FLOWNB_ARG_1}"`` (one word, no globbing)
inside ``"..."``, an unquoted       ``${FLOWNB_ARG_1}`` (already quoted)
heredoc body
inside ``'...'``                    ``'"${FLOWNB_ARG_1}"'`` (close, quote, reopen)
inside ``$'...'``                   ``'"${FLOWNB_ARG_1}"$'``
a quoted heredoc (``<<'EOF'``)      the heredoc becomes unquoted, its text
                                    escaped (``\\$``, ``\\```, ``\\\\``), and the
                                    value ``${FLOWNB_ARG_1}``
arithmetic: ``$((...))``,           the value must be an integer; anything else
``((...))``, ``$[...]``, an array   fails the attempt before bash starts
subscript, ``[[ x -eq y ]]``
==================================  ============================================

bash expands a variable once and never parses its value again, so a value
holding quotes, ``$(...)``, backticks, newlines or an ``EOF`` line stays data.

Contexts where no reference can be data are refused when the step is defined
(:class:`ShellTemplateError`, naming the context): inside ``${...}``, right
after a ``\\`` or a ``$``, in a heredoc delimiter, in the arguments of
``eval``, ``trap``, ``let`` or ``source`` (they run their arguments as code),
in backticks that use backslash escapes, a command whose quotes do not close,
``{% %}`` tags other than ``if``/``for``/``with``/``set x = ...``, and a tag
whose block would leave the quoting context changed (a loop body that opens a
quote it does not close).

The analysis is a model of bash's quoting, not bash's parser: it follows
quotes, escapes, comments, ``$(...)``, backticks, ``${...}``, arithmetic,
``[[ ]]``, ``case`` and heredocs. Commands that take a string and run it as
code (``bash -c "$1"``, ``ssh host "..."``) are beyond any quoting: a value
passed to them is code by their own definition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from flownb.steps.shell_quoting import ESCAPE, Scanner, ShellTemplateError, Slot

__all__ = ["ShellTemplate", "ShellTemplateError", "ShellValueError", "compile_command"]

#: the variables that carry values into the script: FLOWNB_ARG_1, FLOWNB_ARG_2...
ARG_PREFIX = "FLOWNB_ARG_"
_CALL = "__flownb_arg__"
#: how each context refers to the variable (``{}`` is its name)
_FORMS = {
    "word": '"${{{}}}"',
    "dq": "${{{}}}",
    "heredoc": "${{{}}}",
    "sq": "'\"${{{}}}\"'",
    "ansic": "'\"${{{}}}\"$'",
    "comment": "${{{}}}",
    "int": "${{{}}}",
    "int-word": '"${{{}}}"',
}
_INTEGER = re.compile(r"[+-]?[0-9]+")
#: the tags a shell template may use: they emit nothing themselves
_TAGS_OPEN = frozenset({"if", "for", "with"})
_TAGS_MIDDLE = frozenset({"elif", "else"})
_TAGS_CLOSE = frozenset({"endif", "endfor", "endwith"})

_LEX_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
# the rewritten source is literal data already stripped by the original's
# whitespace control: rendering it must not strip again
_RENDER_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


class ShellValueError(ValueError):
    """A value cannot stand where the template put it (not an integer in arithmetic, a NUL byte)."""


@dataclass(frozen=True)
class ShellTemplate:
    """A command template compiled for bash: its rewritten Jinja template and each slot's context."""

    source: str
    template: jinja2.Template
    contexts: tuple[str, ...]
    expressions: tuple[str, ...]

    def render(self, context: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        """The script to run and the environment variables that hold its values.

        Raises :class:`ShellValueError` for a value that cannot be data where it
        stands, and Jinja's errors as :func:`flownb.model.templates.render` would.
        """
        args: dict[str, str] = {}

        def arg(slot: int, value: Any) -> str:
            text = value if isinstance(value, str) else str(value)
            where = self.contexts[slot]
            if where.startswith("int") and (isinstance(value, bool) or not _INTEGER.fullmatch(text.strip())):
                raise ShellValueError(
                    f"{{{{ {self.expressions[slot]} }}}} stands in shell arithmetic, where only an integer is "
                    f"data; its value {_short(text)} is not one"
                )
            if "\x00" in text:
                raise ShellValueError(
                    f"the value of {{{{ {self.expressions[slot]} }}}} holds a NUL byte, which no shell value can"
                )
            name = f"{ARG_PREFIX}{len(args) + 1}"
            args[name] = text.strip() if where.startswith("int") else text
            return _FORMS[where].format(name)

        script = self.template.render({**context, _CALL: arg})
        return script, args


def compile_command(source: str) -> ShellTemplate:
    """Compile a command template; raises :class:`ShellTemplateError` or ``jinja2.TemplateSyntaxError``."""
    return _compile(source)


@lru_cache(maxsize=512)
def _compile(source: str) -> ShellTemplate:
    _LEX_ENV.parse(source)  # a syntax error is reported as Jinja words it, on the user's text
    tokens = list(_LEX_ENV.lex(source))
    scanner = Scanner()
    out: list[str] = []
    slots: list[Slot] = []
    blocks: list[tuple[str, tuple[Any, ...]]] = []
    i = 0
    while i < len(tokens):
        lineno, kind, value = tokens[i]
        if kind == "data":
            scanner.feed(value, len(out))
            out.append(value)
            i += 1
        elif kind == "variable_begin":
            j = _end_of(tokens, i, "variable_end")
            expr = "".join(v for _, k, v in tokens[i + 1 : j]).strip()
            slot = scanner.template(expr, lineno)
            out.append(f"{{{{ {_CALL}({len(slots)}, ({expr})) }}}}")
            slots.append(slot)
            i = j + 1
        elif kind == "block_begin":
            j = _end_of(tokens, i, "block_end")
            inner = "".join(v for _, k, v in tokens[i + 1 : j]).strip()
            _check_tag(scanner, inner, lineno, blocks)
            out.append(f"{{% {inner} %}}")
            i = j + 1
        else:  # comments, raw markers: they emit nothing (raw content comes as data)
            if kind in ("comment_begin", "raw_begin", "raw_end"):
                scanner.refuse_pending(f"the template comment or raw tag at line {lineno}")
            i += 1
    scanner.finish(bool(slots))
    if blocks:  # Jinja's parse above refuses an unclosed block; kept for safety
        raise ShellTemplateError(f"the {{% {blocks[-1][0]} %}} tag is not closed")
    # quoted heredocs that hold values become unquoted, their text escaped: edit each
    # piece from its end, so that the offsets of earlier edits stay true
    for edit in sorted(scanner.edits, key=lambda e: (e.piece, -e.start)):
        text = out[edit.piece]
        new = edit.text if edit.text is not None else ESCAPE.sub(r"\\\g<0>", text[edit.start : edit.end])
        out[edit.piece] = text[: edit.start] + new + text[edit.end :]
    rendered_source = "".join(_raw(p) if n in scanner.data_pieces else p for n, p in enumerate(out))
    contexts = tuple(s.resolve() for s in slots)
    return ShellTemplate(
        source, _RENDER_ENV.from_string(rendered_source), contexts, tuple(s.expression for s in slots)
    )


def _raw(text: str) -> str:
    # literal text goes through Jinja untouched, however it ends or what it holds
    return "{% raw %}" + text + "{% endraw %}" if text else ""


def _end_of(tokens: list[tuple[int, str, str]], start: int, end_kind: str) -> int:
    for j in range(start + 1, len(tokens)):
        if tokens[j][1] == end_kind:
            return j
    raise ShellTemplateError("a template tag is not closed")


def _check_tag(scanner: Scanner, inner: str, lineno: int, blocks: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Refuse tags that could change where a value lands: see the module's docstring."""
    words = inner.split(None, 1)
    name = words[0] if words else ""
    state = scanner.state(f"{{% {name} %}} (line {lineno})")
    if name == "set" and "=" in inner:
        return  # emits nothing, wherever it stands
    if name not in _TAGS_OPEN | _TAGS_MIDDLE | _TAGS_CLOSE:
        raise ShellTemplateError(
            f"the {{% {name} %}} tag (line {lineno}) is not supported in a shell command; use only "
            "{% if %}, {% for %}, {% with %} and {% set x = ... %} there, or build the text in a python step"
        )
    if name in _TAGS_OPEN:
        blocks.append((name, state))
        return
    if not blocks:
        raise ShellTemplateError(f"the {{% {name} %}} tag (line {lineno}) closes no block")
    opened, at = blocks[-1]
    if state != at:
        raise ShellTemplateError(
            f"the {{% {name} %}} tag (line {lineno}) stands in another quoting context than its "
            f"{{% {opened} %}} tag: the text between them opens or closes quotes, so a value in it could land "
            "outside the quotes it was written in; open and close quotes inside each block"
        )
    if name in _TAGS_CLOSE:
        blocks.pop()


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:60]) + "..."
