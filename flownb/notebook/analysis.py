"""What one cell reads, writes, mutates and touches, from its AST.

This module looks at one cell alone; :mod:`flownb.notebook.binding` puts the
cells of a notebook in order and turns these facts into dependencies
(DESIGN §3a). A cell, at top level (also inside top-level ``if``/``for``/
``while``/``with``/``try`` blocks):

* **reads** a name it loads before binding it;
* **writes** a name it assigns, augments, annotates, deletes, imports (``import
  numpy as np`` writes ``np``; ``from m import *`` the names ``m`` exports),
  defines (``def``/``class``), or binds as a loop or ``with ... as`` variable;
* **may mutate** a name when it assigns or deletes ``x[...]`` / ``x.attr``, or
  calls a method on ``x`` that may change it (``x.append(1)``,
  ``df.dropna(inplace=True)``, ``model.fit(X, y)``). Whether ``f(x)`` or
  ``m.f(x)`` may mutate ``x`` depends on whether ``m`` is a module, which only
  the whole notebook knows: such calls are kept as :class:`CallSite` records;
* **touches** hidden shared state: pyplot, the global RNGs, files named by a
  literal, the environment, the working directory (:data:`Effect` keys).

Names starting with ``_`` are the cell's scratch: never read from, or written
to, another cell. Where the analysis cannot be sure, it says more (a cell
orders after more cells), never less.
"""

from __future__ import annotations

import ast
import importlib
import posixpath
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from flownb.errors import FlowDefinitionError

FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT

#: effect keys: cells that share one run in notebook order (``file:NAME`` too)
PYPLOT, RNG, ENV, ANY_FILE, BARRIER = "pyplot", "rng", "env", "file:*", "barrier"

def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: methods that never change their receiver (without ``inplace=True``)
PURE_METHODS = words(
    """
    abs agg aggregate all any apply applymap argmax argmin argsort astype at between bfill boxplot capitalize
    clip copy corr count cov cummax cummin cumprod cumsum describe diff dot drop drop_duplicates dropna
    duplicated endswith equals eval evaluate explode ffill fillna filter find first format get get_dummies
    get_params groupby head hist iat idxmax idxmin iloc info interpolate isin isna isnull items isdigit isalpha
    join keys kurt last loc lower lstrip map mask max mean median melt memory_usage merge min mode ne nlargest
    notna notnull nsmallest nunique pct_change pipe pivot pivot_table plot pow predict predict_proba
    predict_log_proba prod quantile query rank reindex rename replace resample reset_index reshape rolling
    round rstrip sample score select_dtypes set_index shift skew sort_index sort_values split splitlines
    stack startswith std strip sum swapaxes tail take to_csv to_dict to_excel to_frame to_json to_list
    to_markdown to_numpy to_parquet to_pickle to_records to_sql to_string tolist transform transpose
    unique unstack upper value_counts values var view where xs zfill decision_function expanding ewm
    flatten ravel nonzero squeeze any all cumcount ngroup size nth describe isupper islower title
    count_nonzero mean_squared_error staticmethod
    """
)
#: methods that change their receiver wherever they are called, not only as a statement
MUTATING_METHODS = words(
    """
    append extend insert pop popitem remove clear update setdefault sort reverse add discard
    fit partial_fit fit_transform fit_predict fit_resample shuffle seed send write writelines
    readline readlines read close __next__ set_params
    """
)
#: functions that never change their arguments
PURE_FUNCTIONS = words(
    """
    print display pprint len repr str int float bool list tuple dict set frozenset sorted reversed
    sum min max abs round type id isinstance issubclass help dir vars hash format range enumerate zip
    map filter any all iter open input getattr hasattr callable ord chr bin hex oct divmod pow
    """
)
#: modules whose functions never change their arguments (pyplot draws, display shows)
PURE_MODULES = ("matplotlib", "seaborn", "pylab", "IPython", "pprint", "logging", "warnings", "time", "os.path")
PYPLOT_MODULES = ("matplotlib", "seaborn", "pylab", "plotly.express")
#: attributes of an object that draw with pyplot (pandas ``df.plot()``, sklearn displays)
PLOT_ATTRS = words(
    """
    plot hist boxplot scatter bar barh pie imshow hexbin kde density area violinplot heatmap savefig show
    subplots figure legend set_title set_xlabel set_ylabel suptitle grid tight_layout colorbar errorbar
    fill_between axhline axvline annotate contour contourf pcolormesh stem stackplot matshow
    from_estimator from_predictions scatter_matrix plotting
    """
)
#: calls that draw from a global RNG unless given ``random_state=``
RANDOM_CALLS = words(
    """
    train_test_split shuffle resample sample KFold StratifiedKFold ShuffleSplit StratifiedShuffleSplit
    RandomForestClassifier RandomForestRegressor ExtraTreesClassifier ExtraTreesRegressor
    GradientBoostingClassifier GradientBoostingRegressor HistGradientBoostingClassifier
    HistGradientBoostingRegressor DecisionTreeClassifier DecisionTreeRegressor KMeans MiniBatchKMeans
    MLPClassifier MLPRegressor SGDClassifier SGDRegressor Perceptron TSNE IsolationForest
    BaggingClassifier BaggingRegressor AdaBoostClassifier AdaBoostRegressor RandomizedSearchCV
    make_classification make_blobs make_regression make_moons make_circles permutation_importance
    GaussianMixture NMF TruncatedSVD
    """
)
SEEDS = frozenset({"seed", "manual_seed", "set_seed", "set_state", "setstate"})
#: functions of numpy.random / random that do not touch the global RNG
RNG_CONSTRUCTORS = frozenset(
    {"default_rng", "RandomState", "Generator", "SeedSequence", "PCG64", "MT19937", "Philox", "SFC64", "Random",
     "SystemRandom", "BitGenerator"}
)  # fmt: skip
RNG_MODULES = ("numpy.random", "random", "torch", "tensorflow.random")
#: module functions that change the environment or working directory, or read or write any file
ENV_ATTRS = frozenset({"environ", "putenv", "unsetenv", "getenv", "load_dotenv"})
CWD_ATTRS = frozenset({"chdir"})
ANY_FILE_ATTRS = frozenset(
    {"listdir", "scandir", "walk", "glob", "iglob", "system", "popen", "run", "call", "check_call",
     "check_output", "Popen", "rmtree", "makedirs", "mkdir", "remove", "unlink", "rename", "iterdir", "rglob",
     "copy", "copy2", "copyfile", "copytree", "move", "removedirs", "rmdir", "exists", "is_file", "is_dir",
     "getsize", "stat"}
)  # fmt: skip
_FILE_LITERAL = re.compile(r"^[\w\-. /\\~:]{1,240}\.[A-Za-z][A-Za-z0-9]{0,7}$")
#: the options of %time/%timeit/%prun before the statement: -n 100 -r 3 -q -o
_MAGIC_OPTIONS = re.compile(r"^(?:-[nrpTDls]\s*\S+\s+|-[a-zA-Z]+\s+)+")
_SHELL_VAR = re.compile(r"\{([^{}]+)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
#: line and cell magics, as IPython's transformers spell them, and what they mean here
MAGIC_METHODS = frozenset({"run_line_magic", "run_cell_magic", "system", "getoutput"})
HARMLESS_MAGICS = frozenset(
    {"load_ext", "reload_ext", "config", "autoreload", "aimport", "precision", "who", "whos", "who_ls",
     "html", "HTML", "markdown", "latex", "javascript", "js", "svg", "capture", "pinfo", "pinfo2", "pdef",
     "pdoc", "psource", "magic", "lsmagic", "history", "flowsql", "xmode", "page", "alias"}
)  # fmt: skip
CODE_MAGICS = frozenset({"time", "timeit", "prun"})
SHELL_MAGICS = frozenset({"bash", "sh", "script", "system", "sx"})


@dataclass(frozen=True)
class FunctionSummary:
    """What calling a function (or a class's methods) defined in a cell does to globals."""

    free: frozenset[str]
    """Global names its body reads when it runs."""
    mutates: frozenset[str]
    """Global names its body may change in place (``items.append(x)``)."""
    global_writes: frozenset[str]
    """Names it assigns through a ``global`` statement."""
    calls: tuple[CallSite, ...] = ()
    """The calls in its body: what they touch (an RNG, pyplot) depends on what their names are
    where the function is called."""
    roots: frozenset[str] = frozenset()
    effects: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CallSite:
    """A call whose meaning depends on whether its root name is a module.

    ``m.f(x)`` / ``f(x)`` as a statement may mutate ``x`` (``np.random.shuffle(x)``)
    when ``root`` is a module or a function; ``obj.method()`` may mutate ``obj``
    when ``root`` is data.
    """

    root: str
    attrs: tuple[str, ...]
    args: tuple[str, ...]
    """Root names of the arguments."""
    statement: bool
    """The call is a whole statement: its result is dropped, so it is made for its effect."""
    pure_chain: bool
    """Every method in ``attrs`` leaves its receiver unchanged."""
    inplace: bool
    random_state: bool
    """It passes ``random_state=``."""
    local: bool = False
    """The cell bound ``root`` itself before this call: changing it reads no earlier version."""


@dataclass(frozen=True)
class CellAnalysis:
    reads: tuple[str, ...]
    """Names loaded before the cell binds them, in order of first read."""
    writes: tuple[str, ...]
    """Names the cell binds or deletes, in order of first write (mutations excluded)."""
    conditional: frozenset[str]
    """Writes that may not happen (inside ``if``/``for``/``while``/``try``): the previous
    version passes through when they do not."""
    deletes: frozenset[str]
    mutates: frozenset[str]
    """Names the cell surely changes in place (``x[k] = v``, ``x.attr = v``, ``x += v``)."""
    calls: tuple[CallSite, ...]
    soft_reads: frozenset[str]
    """Free names of the functions and classes the cell defines: read when they are
    called, so bound where an earlier cell writes them and never an error when none does."""
    functions: dict[str, FunctionSummary]
    """Functions and classes the cell defines (``def``, ``class``, ``f = lambda``)."""
    modules: dict[str, str]
    """Name -> the module (or ``module.attr``) an import binds to it."""
    roots: frozenset[str]
    """Every name the cell loads, at any depth (for effects that depend on modules)."""
    attr_uses: frozenset[tuple[str, str]]
    """(root name, first attribute) pairs it uses, e.g. ("np", "random")."""
    effects: frozenset[str]
    """Effect keys known from this cell alone (files, env, magics)."""
    random_makers: frozenset[str]
    file_handles: dict[str, frozenset[str]]
    """Names bound to something made from a file literal (``f = open("log.txt")``): its file keys.
    What is later done through the name touches those files."""
    """Names assigned from a call that draws from a global RNG (an estimator without random_state)."""
    star_unresolved: bool
    """A ``from m import *`` whose module could not be imported to list its names."""
    last_expr: bool
    """The cell ends with an expression whose value is shown, as its Out[] would be."""


def parse_cell(source: str, *, step: str, first_line: int = 1) -> ast.Module:
    """Parse a cell body; a syntax error names the step and the cell's line.

    ``first_line`` is the cell line the body starts on (2 under a ``%%step`` line).
    """
    try:
        tree = ast.parse(source, filename=f"<step {step}>", mode="exec")
    except SyntaxError as exc:
        line = (exc.lineno or 1) + first_line - 1
        raise FlowDefinitionError(
            f"step {step!r}: syntax error on line {line} of its cell: {exc.msg}"
            + (f"\n    {exc.text.rstrip()}" if exc.text else "")
        ) from None
    ast.increment_lineno(tree, first_line - 1)
    return tree


def analyze(tree: ast.Module, *, source: str = "") -> CellAnalysis:
    walker = _Walker()
    for stmt in tree.body:
        walker.statement(stmt)
    last = tree.body[-1] if tree.body else None
    shows = isinstance(last, ast.Expr) and not source.rstrip().endswith(";")
    return walker.result(last_expr=shows)


class _Walker(ast.NodeVisitor):
    """Visits top-level statements in execution order: a value before the target it is bound to."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.bound: set[str] = set()
        self.conditional: set[str] = set()
        self.deletes: set[str] = set()
        self.mutates: set[str] = set()
        self.calls: list[CallSite] = []
        self.soft: set[str] = set()
        self.functions: dict[str, FunctionSummary] = {}
        self.modules: dict[str, str] = {}
        self.roots: set[str] = set()
        self.attr_uses: set[tuple[str, str]] = set()
        self.effects: set[str] = set()
        self.random_makers: set[str] = set()
        self.file_handles: dict[str, frozenset[str]] = {}
        self.star_unresolved = False
        self._depth = 0  # > 0 inside a block that may not run (if, for, while, try)
        self._statement_call: ast.Call | None = None

    def result(self, *, last_expr: bool) -> CellAnalysis:
        return CellAnalysis(
            reads=tuple(self.reads), writes=tuple(self.writes), conditional=frozenset(self.conditional),
            deletes=frozenset(self.deletes), mutates=frozenset(self.mutates), calls=tuple(self.calls),
            soft_reads=frozenset(self.soft - self.bound), functions=dict(self.functions),
            modules=dict(self.modules), roots=frozenset(self.roots), attr_uses=frozenset(self.attr_uses),
            effects=frozenset(self.effects), random_makers=frozenset(self.random_makers),
            file_handles=dict(self.file_handles),
            star_unresolved=self.star_unresolved, last_expr=last_expr,
        )  # fmt: skip

    # -- names ------------------------------------------------------------------------

    def _read(self, name: str) -> None:
        self.roots.add(name)
        if name not in self.bound and name not in self.reads and not name.startswith("_"):
            self.reads.append(name)

    def _write(self, name: str) -> None:
        self.bound.add(name)
        if name.startswith("_"):
            return
        if name not in self.writes:
            self.writes.append(name)
        if self._depth:
            self.conditional.add(name)
        self.deletes.discard(name)

    def _mutate(self, name: str) -> None:
        """``name``'s object may change: the cell reads the previous version and writes the next."""
        if name.startswith("_") or name in self.bound:
            return  # a name this cell bound itself: its own version changes, already a write
        self._read(name)
        self.mutates.add(name)

    def _targets(self, target: ast.AST) -> None:
        """Bind the names of an assignment target; ``x[k] = v`` and ``x.a = v`` mutate ``x``."""
        if isinstance(target, ast.Name):
            self._write(target.id)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._targets(elt)
        elif isinstance(target, ast.Starred):
            self._targets(target.value)
        elif isinstance(target, ast.Subscript | ast.Attribute):
            self.visit(target)  # reads the root and any index expressions
            root = _root(target)
            if root is not None:
                self._mutate(root)

    # -- statements ---------------------------------------------------------------------

    def statement(self, stmt: ast.stmt) -> None:
        self.visit(stmt)

    def _block(self, body: Iterable[ast.stmt], *, conditional: bool) -> None:
        self._depth += conditional
        for stmt in body:
            self.visit(stmt)
        self._depth -= conditional

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Call):
            self._statement_call = node.value
        self.visit(node.value)
        self._statement_call = None

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        makes_random = _draws_random(node.value)
        for t in node.targets:
            self._targets(t)
            if isinstance(t, ast.Name):
                self._note_value(t.id, node.value, makes_random)

    def _note_value(self, name: str, value: ast.expr, makes_random: bool) -> None:
        if isinstance(value, ast.Lambda):
            self.functions[name] = _summarize(value)
        if makes_random:
            self.random_makers.add(name)
        files = _file_keys(value)
        if files:
            self.file_handles[name] = files

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            # x += v may change x's object in place (lists, arrays, frames)
            self._mutate(node.target.id)
            self._write(node.target.id)
        else:
            self._targets(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._targets(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._depth += 1  # inside an expression it may not be evaluated
        self._targets(node.target)
        self._depth -= 1

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                self._read(target.id)  # the version it deletes must exist, as in a notebook
                self._write(target.id)
                if not target.id.startswith("_") and not self._depth:
                    self.deletes.add(target.id)
            else:
                self._targets(target)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._block([*node.body, *node.orelse], conditional=True)

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        self._block([*node.body, *node.orelse], conditional=True)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._depth += 1
        self._targets(node.target)
        self._depth -= 1
        self._block([*node.body, *node.orelse], conditional=True)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._targets(item.optional_vars)
                files = _file_keys(item.context_expr)
                if files and isinstance(item.optional_vars, ast.Name):
                    self.file_handles[item.optional_vars.id] = files
        self._block(node.body, conditional=False)

    visit_AsyncWith = visit_With

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        self._block(node.body, conditional=True)
        for handler in node.handlers:
            self.visit(handler)
        self._block([*node.orelse, *node.finalbody], conditional=True)

    visit_TryStar = visit_Try

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bound.add(node.name)  # unbound again when the handler ends: never an output
        self._block(node.body, conditional=True)

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        self._depth += 1
        for case in node.cases:
            for sub in ast.walk(case.pattern):
                name = getattr(sub, "name", None)
                if isinstance(name, str):
                    self._write(name)
            if case.guard is not None:
                self.visit(case.guard)
            for stmt in case.body:
                self.visit(stmt)
        self._depth -= 1

    def visit_Global(self, node: ast.Global) -> None:
        return None  # at top level a global statement changes nothing

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.modules[alias.asname] = alias.name
                self._write(alias.asname)
            else:
                top = alias.name.split(".")[0]
                self.modules[top] = top
                self._write(top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                exported = _star_names(module) if not node.level else None
                if exported is None:
                    self.star_unresolved = True
                    continue
                for name in exported:
                    self.modules[name] = f"{module}.{name}"
                    self._write(name)
                continue
            name = alias.asname or alias.name
            self.modules[name] = f"{module}.{alias.name}"
            self._write(name)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
            self.visit(expr)
        summary = _summarize(node)
        self.soft |= summary.free
        self.functions[node.name] = summary
        self._write(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        summary = _summarize(node)
        self.soft |= summary.free
        self.functions[node.name] = summary
        self._write(node.name)

    # -- expressions ----------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._write(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _attr_chain(node)
        if chain is not None and len(chain) > 1:
            self.attr_uses.add((chain[0], chain[1]))
            if chain[1] in ENV_ATTRS:
                self.effects.add(ENV)
            if chain[1] in CWD_ATTRS:
                self.effects.add(BARRIER)
            if chain[-1] in ANY_FILE_ATTRS:
                self.effects.add(ANY_FILE)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
            self.visit(default)
        self.soft |= _summarize(node).free

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        # names bound by a comprehension are its own; the names it loads are reads
        local = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in local:
                self._read(sub.id)
            elif isinstance(sub, ast.Call):
                self._call(sub, statement=False)
            elif isinstance(sub, ast.Constant):
                self._constant(sub)
            elif isinstance(sub, ast.Attribute):
                chain = _attr_chain(sub)
                if chain is not None and len(chain) > 1:
                    self.attr_uses.add((chain[0], chain[1]))

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_GeneratorExp = _comprehension
    visit_DictComp = _comprehension

    def visit_Call(self, node: ast.Call) -> None:
        statement = self._statement_call is node
        self._statement_call = None
        self._call(node, statement=statement)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        self._constant(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        # an f-string that looks like a file name names a file nobody can know statically
        tail = next((v.value for v in reversed(node.values) if isinstance(v, ast.Constant)), None)
        if isinstance(tail, str) and re.search(r"\.[A-Za-z][A-Za-z0-9]{0,7}$", tail):
            self.effects.add(ANY_FILE)
        self.generic_visit(node)

    def _constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _FILE_LITERAL.match(node.value) and "\n" not in node.value:
            self.effects.add(file_key(node.value))

    def _call(self, node: ast.Call, *, statement: bool) -> None:
        if _is_magic_call(node):
            self._magic(node)
            return
        func = node.func
        root = _root(func)
        attrs = _attrs(func)
        if root is None:
            return
        inplace = any(k.arg == "inplace" and _truthy(k.value) for k in node.keywords)
        name = attrs[-1] if attrs else root
        if name in ENV_ATTRS or root in ENV_ATTRS:
            self.effects.add(ENV)
        if any(a in ANY_FILE_ATTRS for a in attrs):  # Path("out").iterdir(), shutil.rmtree(d): any file
            self.effects.add(ANY_FILE)
        mutating = [a for a in attrs if a in MUTATING_METHODS]
        if root == "next" and not attrs and node.args:
            arg = _root(node.args[0])
            if arg is not None:
                self._mutate(arg)
        args = tuple(
            r for r in (_root(a) for a in [*node.args, *(k.value for k in node.keywords)]) if r and r not in self.bound
        )  # fmt: skip
        self.calls.append(CallSite(
            root, attrs, args, statement, all(a in PURE_METHODS for a in attrs) and not mutating, inplace,
            any(k.arg == "random_state" for k in node.keywords), local=root in self.bound,
        ))  # fmt: skip

    def _magic(self, node: ast.Call) -> None:
        """``get_ipython().run_line_magic('name', 'line')`` and friends: what the magic touches."""
        method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if method in ("system", "getoutput"):
            self._shell(strings[0] if strings else "")
            return
        name = strings[0] if strings else ""
        line = strings[1] if len(strings) > 1 else ""
        cell = strings[2] if len(strings) > 2 else ""
        if name in ("matplotlib", "pylab"):
            self.effects.add(PYPLOT)
        elif name in CODE_MAGICS:
            self._embedded_code(f"{line}\n{cell}")
        elif name in ("cd", "pushd", "popd", "run", "pip", "conda", "mamba", "load", "reset", "bookmark"):
            self.effects.add(BARRIER)
        elif name in ("env", "set_env", "dotenv"):
            self.effects.add(ENV)
        elif name in ("writefile", "file"):
            target = line.split()[-1] if line.split() else ""
            self.effects.add(file_key(target) if target else ANY_FILE)
        elif name in SHELL_MAGICS or name == "sx":
            self._shell(f"{line}\n{cell}")
        elif name not in HARMLESS_MAGICS:
            self.effects.add(BARRIER)  # a magic we do not know: order it with everything

    def _embedded_code(self, code: str) -> None:
        """The statement a ``%time``/``%timeit`` line runs: its reads, calls and mutations."""
        code = _MAGIC_OPTIONS.sub("", code.strip(), count=1)
        try:
            tree = ast.parse(code.strip() or "pass")
        except SyntaxError:
            self.effects.add(BARRIER)
            return
        saved = self._depth
        self._depth += 1  # it runs, but what it binds stays in the magic's own namespace
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
                self.visit(stmt.value if stmt.value is not None else ast.Constant(None))
            else:
                self.visit(stmt)
        self._depth = saved

    def _shell(self, command: str) -> None:
        """A ``!command``: reads the names it expands; may touch any file."""
        self.effects.add(ANY_FILE)
        for braced, dollar in _SHELL_VAR.findall(command):
            if dollar:
                self._read(dollar)
            else:
                try:
                    self.visit(ast.parse(braced, mode="eval"))
                except SyntaxError:
                    continue
        try:
            words = shlex.split(command, comments=True)
        except ValueError:
            words = command.split()
        for word in words:
            if _FILE_LITERAL.match(word):
                self.effects.add(file_key(word))


# -- helpers ---------------------------------------------------------------------------------


def file_key(path: str) -> str:
    """Files are matched by their base name: ``data/x.csv`` and ``./x.csv`` may be one file."""
    return f"file:{posixpath.basename(path.replace(chr(92), '/').rstrip('/'))}"


def _file_keys(value: ast.AST) -> frozenset[str]:
    keys = {
        file_key(n.value) for n in ast.walk(value)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and _FILE_LITERAL.match(n.value)
    }  # fmt: skip
    return frozenset(keys)


def _root(node: ast.AST) -> str | None:
    """The name an attribute/subscript/call chain starts from: ``df`` in ``df["a"].fillna(0)``."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return None


def _attrs(node: ast.AST) -> tuple[str, ...]:
    """The attribute names along a chain, root first: ("random", "shuffle") in np.random.shuffle."""
    out: list[str] = []
    while not isinstance(node, ast.Name):
        if isinstance(node, ast.Attribute):
            out.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript | ast.Starred):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            break
    return tuple(reversed(out))


def _attr_chain(node: ast.Attribute) -> list[str] | None:
    out: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        out.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    out.append(current.id)
    return list(reversed(out))


def _truthy(node: ast.AST) -> bool:
    return not (isinstance(node, ast.Constant) and not node.value)


def _is_magic_call(node: ast.Call) -> bool:
    """``get_ipython().run_line_magic(...)``, ``.system(...)``: IPython syntax after transformation."""
    func = node.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in MAGIC_METHODS
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    )


def _draws_random(value: ast.AST) -> bool:
    """The value is made by a call that draws from a global RNG (no ``random_state=``)."""
    for sub in ast.walk(value):
        if isinstance(sub, ast.Call):
            name = _attrs(sub.func)[-1:] or ((_root(sub.func),) if _root(sub.func) else ())
            if name and name[0] in RANDOM_CALLS and not any(k.arg == "random_state" for k in sub.keywords):
                return True
    return False


def _summarize(scope: ast.AST) -> FunctionSummary:
    """What a function, lambda or class reads, mutates and assigns of the globals when run."""
    local: set[str] = set()
    declared_global: set[str] = set()
    loaded: set[str] = set()
    mutated: set[str] = set()
    assigned_global: set[str] = set()
    for node in ast.walk(scope):
        if isinstance(node, ast.Global):
            declared_global.update(node.names)
        elif isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else local).add(node.id)
        elif isinstance(node, ast.arg):
            local.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node is not scope:
            local.add(node.name)
        elif isinstance(node, ast.alias):
            local.add(node.asname or node.name.split(".")[0])
    for node in ast.walk(scope):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) and node.id in declared_global:
            assigned_global.add(node.id)
        target: ast.AST | None = None
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for t in targets:
                if isinstance(t, ast.Subscript | ast.Attribute):
                    target = t
                    root = _root(target)
                    if root is not None:
                        mutated.add(root)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attrs = _attrs(node.func)
            if any(a in MUTATING_METHODS for a in attrs) or any(
                k.arg == "inplace" and _truthy(k.value) for k in node.keywords
            ):
                root = _root(node.func)
                if root is not None:
                    mutated.add(root)
    free_locals = local - declared_global
    free = (loaded | mutated) - free_locals
    if isinstance(scope, ast.ClassDef):
        free.discard(scope.name)
    body = _Walker()  # what its calls touch: random.random() in a function draws when it is called
    for node in [scope.body] if isinstance(scope, ast.Lambda) else list(getattr(scope, "body", ())):
        body.visit(node)
    for decorator in getattr(scope, "decorator_list", ()):
        body.visit(decorator)
    return FunctionSummary(
        frozenset(n for n in free if not n.startswith("__")),
        frozenset(n for n in mutated - free_locals if not n.startswith("__")),
        frozenset(assigned_global),
        tuple(c for c in body.calls if c.root not in free_locals),
        frozenset(body.roots - free_locals),
        frozenset(body.effects),
    )


_STAR_CACHE: dict[str, tuple[str, ...] | None] = {}


def _star_names(module: str) -> tuple[str, ...] | None:
    """The names ``from module import *`` binds, by importing it (the cell will import it anyway)."""
    if module not in _STAR_CACHE:
        try:
            mod = importlib.import_module(module)
        except Exception:  # noqa: BLE001  (any import failure: the names cannot be known)
            _STAR_CACHE[module] = None
        else:
            names = getattr(mod, "__all__", None)
            if names is None:
                names = [n for n in vars(mod) if not n.startswith("_")]
            _STAR_CACHE[module] = tuple(str(n) for n in names)
    return _STAR_CACHE[module]
