"""The corpus: tutorial-style notebooks, every code cell made a step, end with the sequential run's values.

DESIGN §3a, "The measure": a notebook that runs top to bottom without error must, with
every code cell made a ``%%step``, run under ``flownb run`` and in a kernel and end with
the same final values as the sequential run, and keep independent cells in parallel.
Each notebook of ``tests/notebooks/corpus`` is run top to bottom twice with nbclient
(the reference, and a check that the notebook is deterministic), converted and run by
``flownb run``, and converted and run in a kernel with ``%flow run --wait``; the runs of
one notebook share nothing but the notebook and its data (tests/notebook/notebook_runs.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.notebook.notebook_runs import (
    CORPUS,
    RunCache,
    code_cells,
    compare,
    corpus_notebooks,
    read,
    report,
    run_summary,
    selected_notebooks,
    step_times,
)

pytestmark = pytest.mark.slow

NOTEBOOKS = corpus_notebooks()
IDS = [nb.stem for nb in NOTEBOOKS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[RunCache]:
    cache = RunCache(tmp_path_factory.mktemp("corpus"), selected_notebooks(request, NOTEBOOKS),
                     modes=("sequential", "sequential-again", "cli", "kernel"))  # fmt: skip
    yield cache
    cache.close()


def test_the_corpus_has_at_least_15_notebooks() -> None:
    assert len(NOTEBOOKS) >= 15, [nb.name for nb in NOTEBOOKS]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_the_notebook_is_deterministic(nb: Path, runs: RunCache) -> None:
    """Run top to bottom twice in fresh kernels, it ends with the same values (else it is no reference)."""
    diffs = compare(runs.get(nb, "sequential"), runs.get(nb, "sequential-again"))
    assert not diffs, "two sequential runs differ:\n" + "\n".join(diffs)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_flownb_run_ends_with_the_sequential_values(nb: Path, runs: RunCache) -> None:
    expected = runs.get(nb, "sequential")
    code, _, got = runs.get(nb, "cli")
    diffs = compare(expected, got)
    assert code == 0 and not diffs, report(f"flownb run {nb.name}", diffs, got, exit_code=code)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_a_kernel_run_ends_with_the_sequential_values(nb: Path, runs: RunCache) -> None:
    expected = runs.get(nb, "sequential")
    got = runs.get(nb, "kernel")
    diffs = compare(expected, got)
    assert not got.errors and not diffs, report(f"%flow run --wait of {nb.name} in a kernel", diffs, got)


def test_independent_model_cells_run_at_the_same_time(runs: RunCache) -> None:
    """The wine notebook scores a random forest and gradient boosting in two cells that share
    only read data: under ``flownb run`` their steps' recorded intervals overlap."""
    nb = CORPUS / "wine_model_comparison.ipynb"
    cells = code_cells(read(nb))
    branches = [f"c{n}" for n, src in enumerate(cells, start=1)
                if "RandomForestClassifier(n_estimators" in src or "GradientBoostingClassifier(n_estimators" in src]  # fmt: skip
    assert len(branches) == 2, branches
    _, output, values = runs.get(nb, "cli")
    assert values.store is not None and values.store.exists(), f"no store; flownb run said:\n{output[-3000:]}"
    times = step_times(values.store)
    missing = [b for b in branches if b not in times or times[b][0] is None or times[b][1] is None]
    assert not missing, f"steps {missing} have no recorded start and end; the store says:\n{run_summary(values.store)}"
    (start_a, end_a), (start_b, end_b) = (times[b] for b in branches)
    assert max(start_a, start_b) < min(end_a, end_b), (
        f"{branches[0]} ran {start_a} .. {end_a}, {branches[1]} ran {start_b} .. {end_b}: one after the other"
    )
