"""What a cell reads and what it assigns, from its AST.

A ``%%step`` cell's *inputs* are the names it reads before assigning them
that another step assigns; its *outputs* are the names it assigns at top
level (``x = ...``, ``x += ...``, ``x: T = ...``, ``(x := ...)``), also inside
top-level ``if``/``for``/``with``/``try`` blocks. Loop variables (``for x in``),
context managers (``with ... as f``), imports, ``def`` and ``class`` bind
helpers, not data: they are not outputs, and neither are names starting with
``_`` (a cell's scratch variables).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from flownb.errors import FlowDefinitionError

FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


@dataclass(frozen=True)
class CellAnalysis:
    reads: tuple[str, ...]
    """Names read before the cell binds them, in order of first read."""
    assigns: tuple[str, ...]
    """Output names, in order of first assignment."""
    binds: frozenset[str]
    """Every name the cell binds at top level (outputs, imports, defs, scratch)."""


def parse_cell(source: str, *, step: str, first_line: int = 1) -> ast.Module:
    """Parse a cell body; a syntax error names the step and the cell's line.

    ``first_line`` is the cell line the body starts on (2 under a ``%%step`` line).
    """
    try:
        tree = ast.parse(source, filename=f"<step {step}>", mode="exec", feature_version=None, type_comments=False)
    except SyntaxError as exc:
        line = (exc.lineno or 1) + first_line - 1
        raise FlowDefinitionError(
            f"step {step!r}: syntax error on line {line} of its cell: {exc.msg}"
            + (f"\n    {exc.text.rstrip()}" if exc.text else "")
        ) from None
    ast.increment_lineno(tree, first_line - 1)
    return tree


def analyze(tree: ast.Module) -> CellAnalysis:
    walker = _Walker()
    for stmt in tree.body:
        walker.visit(stmt)
    return CellAnalysis(tuple(walker.reads), tuple(walker.outputs), frozenset(walker.bound))


class _Walker(ast.NodeVisitor):
    """Visits statements in execution order: a value before the target it is bound to."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.outputs: list[str] = []
        self.bound: set[str] = set()

    def _read(self, name: str) -> None:
        if name not in self.bound and name not in self.reads:
            self.reads.append(name)

    def _bind(self, name: str, *, output: bool = True) -> None:
        self.bound.add(name)
        if output and not name.startswith("_") and name not in self.outputs:
            self.outputs.append(name)

    def _targets(self, target: ast.AST, *, output: bool = True) -> None:
        """Bind the names of an assignment target; read what subscripts and attributes use."""
        if isinstance(target, ast.Name):
            self._bind(target.id, output=output)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._targets(elt, output=output)
        elif isinstance(target, ast.Starred):
            self._targets(target.value, output=output)
        else:  # x.attr = ..., x[k] = ...: reads x (mutation of an input is not a new output)
            self.visit(target)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._bind(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for t in node.targets:
            self._targets(t)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self.visit(node.value)
        self._targets(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._targets(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._targets(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._targets(node.target, output=False)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._targets(item.optional_vars, output=False)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0], output=False)

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bound.add(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # a nested scope reads the free names it uses (when called: conservatively, now)
        if not isinstance(node, ast.Lambda):
            for deco in node.decorator_list:
                self.visit(deco)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        for name in sorted(_free_names(node)):
            self._read(name)
        if not isinstance(node, ast.Lambda):
            self._bind(node.name, output=False)

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        for name in sorted(_free_names(node)):
            self._read(name)
        self._bind(node.name, output=False)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        for name in sorted(_free_names(node)):
            self._read(name)

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_GeneratorExp = _comprehension
    visit_DictComp = _comprehension


def _free_names(scope: ast.AST) -> set[str]:
    """Names a nested scope loads but does not bind itself (arguments, assignments)."""
    loaded: set[str] = set()
    local: set[str] = set()
    for node in ast.walk(scope):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else local).add(node.id)
        elif isinstance(node, ast.arg):
            local.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node is not scope:
            local.add(node.name)
        elif isinstance(node, ast.alias):
            local.add(node.asname or node.name.split(".")[0])
    return loaded - local
