"""The layers point one way (DESIGN §4), checked by walking every module's imports.

Every module of ``flownb/`` is parsed with :mod:`ast`; every import counts, at module
level, inside a function (lazy) or under ``if TYPE_CHECKING:`` (a type is a dependency
too). A module belongs to a layer, its first name below ``flownb`` (``flownb.engine.run``
is in ``engine``; ``flownb.cli.progress`` in ``cli``; ``flownb/__init__.py`` and
``flownb.queries``, the public facade, in ``api``), and a layer may import only the
layers ``MAY_IMPORT`` lists for it, besides itself. No module may use a private name
(``_x``) of another layer, whether imported (``from flownb.engine.run import _user``) or
reached through a module (``duckdb_store._alive``).

``ALLOWED`` lists the violations of today's code, each with its reason. It only shrinks:
a new violation fails the check, and so does an entry that no longer occurs (delete it
when the refactor removes the import). Dynamic imports (``importlib.import_module``)
are not seen.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).parents[1] / "flownb"

# Which layers each layer may import besides its own; a layer missing here imports nothing.
# model <- engine <- steps; store and render stand alone (render draws a model's graph);
# executors sit below the engine; notebook, cli and server sit on top.
_BOTTOM = frozenset({"errors", "model"})
MAY_IMPORT: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "model": frozenset({"errors"}),
    "store": frozenset({"errors"}),
    "render": _BOTTOM,
    "executors": _BOTTOM,
    "engine": _BOTTOM | {"store", "executors"},
    "steps": _BOTTOM | {"store", "executors", "engine"},
    "notebook": _BOTTOM | {"store", "executors", "engine", "steps", "render", "api"},
    "server": _BOTTOM | {"store", "executors", "engine", "steps", "render", "api", "notebook"},
    "cli": _BOTTOM | {"store", "executors", "engine", "steps", "render", "api", "notebook", "server"},
    "api": _BOTTOM | {"store", "executors", "engine", "steps", "render", "notebook", "cli", "server"},
}

# Single modules a layer may import although their layer is closed to it. None today: the
# engine runs a step through the kind its spec carries (steps/registry.py set it when the
# step was defined), never by importing a kind.
MAY_IMPORT_MODULES: dict[str, frozenset[str]] = {}

# A run's insides: the layers that observe runs (the views, the CLI, the server, the facade)
# hear them through Run.observe / watch_runs / Run.events, never through these.
RUN_INSIDES = frozenset({
    "flownb.engine.execution", "flownb.engine.scheduler", "flownb.engine.journal", "flownb.engine.gates",
    "flownb.engine.recorder", "flownb.engine.stepper", "flownb.engine.fastpath",
})  # fmt: skip
OBSERVERS = frozenset({"notebook", "cli", "server", "api"})

# Top-level modules that are not packages, by layer; any other top-level module is reported
# until it is placed here or moved into a package.
TOP_LEVEL_MODULES = {"": "api", "api": "api", "queries": "api", "errors": "errors"}

PENDING = "refactor pending (issue 13)"

# Today's violations, (importer, imported): the imported module, or module.name for a
# private name. Only delete entries; never add one.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    line: int
    why: str

    @property
    def key(self) -> tuple[str, str]:
        return self.importer, self.imported

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}: {self.why}"


def modules_of(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under the package directory ``root``: dotted name -> (file, is a package)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def layer_of(module: str) -> str | None:
    """``flownb.engine.run`` -> ``engine``; ``flownb.cli.progress.x`` -> ``cli``; ``flownb`` -> ``api``."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    if name in TOP_LEVEL_MODULES:
        return TOP_LEVEL_MODULES[name]
    return name if name in MAY_IMPORT else None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path, is_package: bool, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported, line, private) for each import of the package inside ``module``.

    ``imported`` is the most specific module (``from p import m`` of a submodule is ``p.m``),
    or ``module.name`` when the name is private, which is what the check judges then.
    """
    package = module.split(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int, bool]] = []
    aliases: dict[str, str] = {}  # names bound to a module of the package, for `mod._x` uses
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    found.append((alias.name, node.lineno, False))
                    aliases[alias.asname or package] = alias.name if alias.asname else package
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            if source.split(".")[0] != package:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    found.append((submodule, node.lineno, False))
                    aliases[alias.asname or alias.name] = submodule
                elif _is_private(alias.name):
                    found.append((submodule, node.lineno, True))
                else:
                    found.append((source, node.lineno, False))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = _dotted(node.value, aliases, known)
            if owner is not None:
                found.append((f"{owner}.{node.attr}", node.lineno, True))
    return found


def _dotted(node: ast.expr, aliases: dict[str, str], known: set[str]) -> str | None:
    """The module an expression such as ``duckdb_store`` or ``flownb.store.base`` names, if any."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value, aliases, known)
        if owner is not None and f"{owner}.{node.attr}" in known:
            return f"{owner}.{node.attr}"
    return None


def violations(root: Path) -> list[Violation]:
    """What breaks the layer rules in the package directory ``root``."""
    modules = modules_of(root)
    known = set(modules)
    found: list[Violation] = []
    for module, (path, is_package) in modules.items():
        layer = layer_of(module)
        if layer is None:
            found.append(Violation(module, module, 1, "in no layer: place it in TOP_LEVEL_MODULES or a layer's package"))
            continue
        for imported, line, private in imports_of(module, path, is_package, known):
            target = layer_of(imported)
            if target == layer:
                continue
            if private:
                found.append(Violation(module, imported, line, f"a private name of layer {target}"))
            elif layer in OBSERVERS and imported in RUN_INSIDES:
                found.append(Violation(module, imported, line, "a run's insides: observe it (Run.observe, watch_runs)"))
            elif target is None or (
                target not in MAY_IMPORT[layer] and imported not in MAY_IMPORT_MODULES.get(layer, frozenset())
            ):
                found.append(Violation(module, imported, line, f"layer {layer} may not import layer {target}"))
    return found


def judge(found: list[Violation], allowed: dict[tuple[str, str], str]) -> tuple[list[str], list[str]]:
    """The violations ``allowed`` does not list, and the entries of ``allowed`` that no longer occur."""
    new = [str(v) for v in found if v.key not in allowed]
    occurring = {v.key for v in found}
    stale = [f"{importer} -> {imported} ({why})" for (importer, imported), why in allowed.items() if (importer, imported) not in occurring]
    return new, stale


def test_no_new_layer_violation() -> None:
    new, _ = judge(violations(PACKAGE_ROOT), ALLOWED)
    assert not new, "imports against DESIGN §4's layers (fix the import; do not extend ALLOWED):\n" + "\n".join(new)


def test_allowed_violations_only_shrink() -> None:
    _, stale = judge(violations(PACKAGE_ROOT), ALLOWED)
    assert not stale, "these no longer occur: delete them from ALLOWED in tests/test_layers.py:\n" + "\n".join(stale)


def test_every_module_is_walked() -> None:
    # a checker that reads nothing passes everything: make sure it sees the package
    modules = modules_of(PACKAGE_ROOT)
    assert {"flownb", "flownb.errors", "flownb.engine.run", "flownb.model.flow", "flownb.store.base"} <= set(modules)
    assert len(modules) > 40


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "flownb"


@pytest.fixture
def fake_package(tmp_path: Path) -> dict[str, str]:
    """A small package laid out like flownb, every import in it allowed."""
    return {
        "flownb/__init__.py": "from flownb.model.flow import Flow\n",
        "flownb/errors.py": "class FlownbError(Exception):\n    pass\n",
        "flownb/model/__init__.py": "",
        "flownb/model/flow.py": "from flownb.errors import FlownbError\n\nclass Flow:\n    pass\n",
        "flownb/engine/__init__.py": "",
        "flownb/engine/run.py": "from ..model import flow\n\ndef _user() -> str:\n    return 'me'\n",
        "flownb/engine/execution.py": "from flownb.engine import run\n",
        "flownb/store/__init__.py": "",
        "flownb/store/base.py": "def _alive(pid: int) -> bool:\n    return True\n",
        "flownb/notebook/__init__.py": "import flownb\nfrom flownb.engine import run\n",
    }


def test_the_fake_package_passes(tmp_path: Path, fake_package: dict[str, str]) -> None:
    assert violations(_write(tmp_path, fake_package)) == []


@pytest.mark.parametrize(
    ("module", "planted", "expected"),
    [
        # a lazy import inside a function, upward from model
        ("flownb/model/flow.py", "def run():\n    from flownb.engine.run import _user\n", "flownb.engine.run._user"),
        ("flownb/model/flow.py", "def run():\n    import flownb.engine.run\n", "flownb.engine.run"),
        # a relative import, and one under TYPE_CHECKING
        ("flownb/store/base.py", "from ..engine import run\n", "flownb.engine.run"),
        ("flownb/store/base.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flownb.model.flow import Flow\n", "flownb.model.flow"),
        # store may not import the facade either
        ("flownb/store/base.py", "import flownb\n", "flownb"),
        # a private name across layers, imported or reached through a module
        ("flownb/notebook/__init__.py", "from flownb.engine.run import _user\n", "flownb.engine.run._user"),
        ("flownb/notebook/__init__.py", "from flownb.store import base\nbase._alive(1)\n", "flownb.store.base._alive"),
        ("flownb/notebook/__init__.py", "import flownb.store.base\nflownb.store.base._alive(1)\n", "flownb.store.base._alive"),
        # an observer reaching into a run, even under TYPE_CHECKING
        ("flownb/notebook/__init__.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flownb.engine.execution import RunExecution\n", "flownb.engine.execution"),
    ],
)
def test_a_planted_wrong_import_is_reported(
    tmp_path: Path, fake_package: dict[str, str], module: str, planted: str, expected: str
) -> None:
    fake_package[module] += planted
    found = violations(_write(tmp_path, fake_package))
    importer = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert [v.key for v in found] == [(importer, expected)], [str(v) for v in found]
    new, _ = judge(found, {})
    assert len(new) == 1


def test_a_module_in_no_layer_is_reported(tmp_path: Path, fake_package: dict[str, str]) -> None:
    fake_package["flownb/helpers.py"] = ""
    assert [v.key for v in violations(_write(tmp_path, fake_package))] == [("flownb.helpers", "flownb.helpers")]


def test_allowed_entries_excuse_and_must_still_occur(tmp_path: Path, fake_package: dict[str, str]) -> None:
    fake_package["flownb/model/flow.py"] += "from flownb.engine import run\n"
    found = violations(_write(tmp_path, fake_package))
    excused = {("flownb.model.flow", "flownb.engine.run"): PENDING}
    assert judge(found, excused) == ([], [])
    # once the import is gone, its entry is reported so that it is deleted
    _, stale = judge([], excused)
    assert stale == [f"flownb.model.flow -> flownb.engine.run ({PENDING})"]
