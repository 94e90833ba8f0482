"""Templates and expressions: Jinja2's sandbox with strict undefined.

A string that is exactly one ``{{ expression }}`` yields the value with its own
type; any other template yields a string. Data (step outputs, HTTP bodies) is
only ever passed *into* a template as context, never rendered *as* one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from flownb.errors import TemplateError

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=1024)
def _compile_template(text: str) -> jinja2.Template:
    return _ENV.from_string(text)


@lru_cache(maxsize=1024)
def _compile_expression(expr: str) -> Callable[..., Any]:
    return _ENV.compile_expression(expr, undefined_to_none=False)


def references(text: str) -> set[str]:
    """Names a template reads from its context (step names and context names)."""
    try:
        return set(meta.find_undeclared_variables(_ENV.parse(text)))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {text!r} does not parse: {exc.message}") from None


def expression_references(expr: str) -> set[str]:
    return references("{{ " + expr + " }}")


def check_expression(expr: str) -> None:
    try:
        _compile_expression(expr)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"expression {expr!r} does not parse: {exc.message}") from None


def render(text: str, context: Mapping[str, Any]) -> Any:
    """Render ``text``; a lone ``{{ expr }}`` keeps the value's type.

    (Shell commands are rendered by :mod:`flownb.steps.shell_template`, which
    keeps every value out of the shell's syntax.)
    """
    if not is_template(text):
        return text
    single = _SINGLE_EXPRESSION.match(text)
    if single:
        return evaluate(single.group("expr"), context)
    with explained("template", text):
        return _compile_template(text).render(context)


def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    """Evaluate one expression (``when``, ``foreach``, ``repeat_until``)."""
    with explained("expression", expr):
        return _compile_expression(expr.strip())(**context)


@contextlib.contextmanager
def explained(what: str, text: str) -> Iterator[None]:
    """Jinja's errors as TemplateError, quoting the template or expression."""
    try:
        yield
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{what} {text!r} does not parse: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{what} {text!r}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{what} {text!r} was refused by the sandbox: {exc}") from None


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON-like value (dicts, lists)."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, Mapping):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context) for v in value]
    return value


def value_references(value: Any) -> set[str]:
    if isinstance(value, str):
        return references(value) if is_template(value) else set()
    if isinstance(value, Mapping):
        return set().union(*(value_references(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(value_references(v) for v in value)) if value else set()
    return set()
