"""Cell analysis and cell functions, without a kernel."""

from __future__ import annotations

import pickle

import pytest

import flownb
from flownb.errors import FlowDefinitionError
from flownb.notebook.analysis import analyze, parse_cell
from flownb.notebook.cells import CellDef, CellRegistry


def test_inputs_are_read_before_assigned_outputs_are_assigned() -> None:
    src = (
        "import math\ndf = df.dropna()\nx += 1\nfor i in rows:\n    total = total + i\n"
        "with open(p) as f:\n    y = f.read()\n_tmp = 1\n"
    )
    a = analyze(parse_cell(src, step="s"))
    assert a.reads[:4] == ("df", "x", "rows", "total")
    assert a.assigns == ("df", "x", "total", "y")  # not i, f, math or _tmp


def test_syntax_error_names_the_step_and_the_cell_line() -> None:
    with pytest.raises(FlowDefinitionError, match=r"step 'bad': syntax error on line 3 of its cell"):
        parse_cell("x = 1\ny = (\n", step="bad", first_line=2)


def registry(ns: dict[str, object]) -> tuple[flownb.Flow, CellRegistry]:
    flow = flownb.Flow("cells", db=":memory:")
    return flow, CellRegistry(flow, lambda: ns)


def test_a_later_cell_may_define_what_an_earlier_one_reads() -> None:
    ns: dict[str, object] = {"k": 10}
    flow, reg = registry(ns)
    reg.define(CellDef("total", "total = base * k + params['p']", "", ("cell", "c2"), {}))
    assert flow.steps["total"].deps == frozenset()
    reg.define(CellDef("load", "base = 4\nother = 1", "", ("cell", "c1"), {}))
    assert flow.steps["total"].deps == frozenset({"load"})
    run = flow.run({"p": 2}).wait(30)
    assert run.status == "succeeded", run.error
    assert run.outputs["total"] == 42 and run.outputs["load"] == {"base": 4, "other": 1}
    with pytest.raises(FlowDefinitionError, match="already taken"):
        reg.define(CellDef("load", "base = 5", "", ("cell", "elsewhere"), {}))


def test_a_cycle_between_cells_changes_nothing() -> None:
    flow, reg = registry({})
    reg.define(CellDef("a", "x = 1", "", ("cell", "a"), {}))
    reg.define(CellDef("b", "y_value = x", "", ("cell", "b"), {}))
    with pytest.raises(flownb.CycleError):
        reg.define(CellDef("a", "x = y_value", "", ("cell", "a"), {}))
    assert flow.steps["b"].deps == frozenset({"a"}) and flow.steps["a"].deps == frozenset()


def test_remote_callable_runs_the_cell_from_source_after_pickling() -> None:
    import math

    ns = {"math": math, "scale": 3}
    flow, reg = registry(ns)
    reg.define(CellDef("src", "vals = [1, 4]", "", ("cell", "s"), {}))
    reg.define(CellDef("root", "roots = [math.sqrt(v) * scale for v in vals]", "", ("cell", "r"), {}))
    fn = flow.steps["root"].fn
    remote = fn.__flownb_remote__({"src": {"vals": [1, 4, 9]}})
    assert pickle.loads(pickle.dumps(remote))() == {"roots": [3.0, 6.0, 9.0]}
