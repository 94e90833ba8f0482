"""Issue 12's minimal cases, each a notebook run top to bottom, by ``flownb run`` and in a kernel.

Each notebook of ``tests/notebooks/cases`` is one failure the issue lists ("What fails
today", items 1 to 8), written as the issue states it; with every code cell made a step
it must end with the values of the sequential run (DESIGN §3a). The first tests check the
harness itself on values made by hand, without a kernel.
"""

from __future__ import annotations

import random
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest

from tests.notebook.notebook_runs import (
    CASES,
    COLLECT,
    RunCache,
    case_notebooks,
    compare,
    convert,
    kernel_notebook,
    report,
    selected_notebooks,
)

NOTEBOOKS = case_notebooks()
IDS = [nb.stem for nb in NOTEBOOKS]
collect: dict[str, Any] = runpy.run_path(str(COLLECT))


def fp(**values: Any) -> dict[str, Any]:
    return {name: collect["fingerprint"](value) for name, value in values.items()}


class Thing:
    def __init__(self, size: int) -> None:
        self.size = size
        self.tags = ["a"]


# -- the harness, on values made by hand -------------------------------------------------------


def test_equal_values_compare_equal() -> None:
    df = pd.DataFrame({"a": [1.0, np.nan]}, index=pd.Index(["x", "y"], name="k"))

    def values() -> dict[str, Any]:
        gen = (i for i in range(3))
        return fp(n=1, f=float("nan"), s={3, 1, 2}, arr=np.array([1.0, np.nan]), df=df.copy(), mod=np,
                  fn=compare, gen=gen, obj=Thing(3), rng=np.random.default_rng(5), ts=pd.Timestamp("2024-01-01", tz="Europe/Paris"),
                  nested={"a": [1, (2, 3)], "b": {"c": None}})  # fmt: skip

    assert compare(values(), values()) == []


@pytest.mark.parametrize(
    ("a", "b", "words"),
    [
        (1, 2, "x: expected int 1, got int 2"),
        (1, True, "x: expected int 1, got bool True"),
        (1.0, float("nan"), "x: expected float 1.0, got float nan"),
        ([1, 2, 3], [1, 2], "length 3 vs 2"),
        ({"a": [1, 2]}, {"a": [1, 5]}, "x['a'][1]: expected int 2, got int 5"),
        ({"a": 1}, {"b": 1}, "keys differ: missing [\"str 'a'\"], extra [\"str 'b'\"]"),
        ({1, 2}, {1, 3}, "only expected ['int 2'], only got ['int 3']"),
        (np.arange(4), np.array([0, 1, 7, 3]), "differs at 1 places, first [2]: expected np.int64(2), got np.int64(7)"),
        (np.arange(4), np.arange(4.0), "expected ndarray <i8 shape (4,)"),
        (Thing(3), Thing(4), "x.size: expected int 3, got int 4"),
        (np.random.default_rng(1), np.random.default_rng(2), "x.<reduce args>[0].<state>"),
        ((i for i in []), [], "expected <generator>, got list of 0"),
        (pd.Timestamp("2024-01-01", tz="Europe/Paris"), pd.Timestamp("2024-01-01", tz="UTC"), "x.<"),
    ],
)
def test_differences_are_named_and_shown(a: Any, b: Any, words: str) -> None:
    diffs = compare(fp(x=a), fp(x=b))
    assert len(diffs) == 1 and words in diffs[0], diffs


def test_differences_of_frames_are_found_exactly() -> None:
    base = pd.DataFrame({"w": [60.0, 72.0]}, index=pd.Index(["ann", "bob"], name="who"))
    variants = {
        "index name": base.rename_axis("name"),
        "index as a column": base.reset_index(),
        "a value": base.assign(w=[60.0, 72.000001]),
        "a dtype": base.astype("float32"),
        "int column names": pd.DataFrame({0: [1]}),
        "a categorical": base.assign(c=pd.Categorical(["x", "y"])),
        "a time zone": base.assign(t=pd.to_datetime(["2024-03-31 01:00"] * 2).tz_localize("Europe/Paris")),
        "Int64": base.astype("Int64"),
        "attrs": base.copy(),
        "an empty frame": base.iloc[:0],
    }
    variants["attrs"].attrs["unit"] = "kg"
    other = {
        "int column names": pd.DataFrame({"0": [1]}),
        "a categorical": base.assign(c=["x", "y"]),
        "a time zone": base.assign(t=pd.to_datetime(["2024-03-31 01:00"] * 2).tz_localize("UTC")),
    }
    for label, variant in variants.items():
        diffs = compare(fp(df=other.get(label, base)), fp(df=variant))
        assert len(diffs) == 1 and diffs[0].startswith("df: "), (label, diffs)
    assert "attrs differ" in compare(fp(df=base), fp(df=variants["attrs"]))[0]


def test_missing_and_extra_names_are_reported() -> None:
    assert compare(fp(x=1, y=2), fp(y=2, c3=5)) == [
        "c3: extra name, not in the sequential run: int 5",
        "x: missing; the sequential run has int 1",
    ]


def test_the_user_names_are_those_a_user_defined() -> None:
    hidden_open = open

    class Shell:
        user_ns = {"In": [], "Out": {}, "_": 1, "_i3": "x", "__builtins__": None, "open": hidden_open,
                   "get_ipython": None, "exit": None, "quit": None, "x": 1, "_private": 2, "df": "y"}  # fmt: skip
        user_ns_hidden = {"In": [], "Out": {}, "open": hidden_open, "get_ipython": None}

    assert sorted(collect["user_names"](Shell())) == ["df", "x"]
    Shell.user_ns["open"] = lambda *a: None  # the user's own `open` is theirs
    assert sorted(collect["user_names"](Shell())) == ["df", "open", "x"]


def test_convert_makes_every_code_cell_a_numbered_step() -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("import numpy as np"),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("%matplotlib inline\nx = np.arange(3)"),
    ])  # fmt: skip
    out = convert(nb)
    assert [c.source for c in out.cells] == [
        "# title", "%%step c1\nimport numpy as np", "text", "%%step c2\n%matplotlib inline\nx = np.arange(3)",
    ]  # fmt: skip
    assert [c.id for c in out.cells] == [c.id for c in nb.cells]
    assert nb.cells[1].source == "import numpy as np"  # the original is left alone
    k = kernel_notebook(nb)
    assert k.cells[0].source == "%load_ext flownb" and k.cells[-1].source == "%flow run --wait"
    assert [c.source for c in k.cells[1:-1]] == [c.source for c in out.cells]


def test_fingerprints_are_plain_data() -> None:
    """What crosses from a kernel to the harness unpickles without the notebook's classes."""
    import pickle
    import subprocess
    import sys

    random.seed(0)
    values = fp(obj=Thing(1), rng=random.Random(1), fn=lambda v: v, df=pd.DataFrame({"a": [1]}))
    blob = pickle.dumps(values)
    # a process that never imported this module (where Thing lives) reads them
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=blob, check=True, cwd="/")  # fmt: skip
    assert compare(pickle.loads(blob), values) == []


# -- the cases ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[RunCache]:
    cache = RunCache(tmp_path_factory.mktemp("cases"), selected_notebooks(request, NOTEBOOKS))
    yield cache
    cache.close()


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_flownb_run_ends_with_the_sequential_values(nb: Path, runs: RunCache) -> None:
    expected = runs.get(nb, "sequential")
    code, _, got = runs.get(nb, "cli")
    diffs = compare(expected, got)
    assert code == 0 and not diffs, report(f"flownb run {nb.name}", diffs, got, exit_code=code)


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_a_kernel_run_ends_with_the_sequential_values(nb: Path, runs: RunCache) -> None:
    expected = runs.get(nb, "sequential")
    got = runs.get(nb, "kernel")
    diffs = compare(expected, got)
    assert not got.errors and not diffs, report(f"%flow run --wait of {nb.name} in a kernel", diffs, got)


@pytest.mark.slow
def test_flownb_run_prints_what_a_cell_displays(runs: RunCache) -> None:
    """Issue 12, item 7: a cell whose last line is a value shows it; ``flownb run`` prints it."""
    nb = CASES / "13_del_and_display.ipynb"
    shown = runs.get(nb, "sequential").displays
    assert [n for n, _ in shown] == [4, 5], shown
    _, output, _ = runs.get(nb, "cli")
    lines = output.splitlines()
    for n, text in shown:
        for want in text.splitlines():
            assert any(want.strip() in line for line in lines), (
                f"code cell {n} displays {want.strip()!r}; flownb run printed:\n{output[-3000:]}"
            )
