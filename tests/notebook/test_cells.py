"""Cell analysis, notebook-order binding and cell functions, without a kernel (DESIGN §3a)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import flownb
from flownb.errors import FlowDefinitionError
from flownb.notebook.analysis import ANY_FILE, BARRIER, ENV, PYPLOT, RNG, analyze, parse_cell
from flownb.notebook.binding import Node, Plan, bind
from flownb.notebook.cells import CellDef, CellRegistry


def cell(src: str) -> Any:
    return analyze(parse_cell(src, step="s"), source=src)


def plan_of(*sources: str, namespace: dict[str, Any] | None = None, in_order: bool = False) -> Plan:
    nodes = [Node(f"c{i}", f"cell [{i}] (step c{i})", cell(src)) for i, src in enumerate(sources, 1)]
    return bind(nodes, external={}, namespace=namespace or {}, in_order=in_order)


def waits(plan: Plan, step: str) -> set[str]:
    p = plan.cells[step]
    return set(p.data) | set(p.order)


# -- one cell ----------------------------------------------------------------------------------


def test_reads_before_writes_and_what_a_cell_writes() -> None:
    a = cell(
        "import math\ndf = df.dropna()\nx += 1\nfor i in rows:\n    total = total + i\n"
        "with open(p) as f:\n    y = f.read()\n_tmp = 1\ndef helper(v):\n    return v * k\nclass Box: pass\n"
    )
    assert a.reads[:4] == ("df", "x", "rows", "total")
    # imports, defs, classes, loop and with variables are writes too; _names stay in the cell
    assert a.writes == ("math", "df", "x", "i", "total", "f", "y", "helper", "Box")
    assert a.conditional == {"i", "total"}  # a loop body may not run: the previous version passes through
    assert "k" in a.soft_reads  # read when helper is called
    assert a.modules["math"] == "math"
    assert "x" in a.mutates  # x += 1 may change x in place


def test_mutations_deletions_and_magics() -> None:
    a = cell("people['h'] = h\nobj.attr = 1\ndel old\ndel cache[0]\nnext(it)")
    assert {"people", "obj", "cache", "it"} <= a.mutates
    assert a.deletes == {"old"} and "old" in a.reads
    timeit = cell("get_ipython().run_line_magic('timeit', '-n 2 -r 1 f(xs)')")
    assert {"f", "xs"} <= set(timeit.reads) and not timeit.effects
    shell = cell("get_ipython().system('wc -l {path} $name data.csv')")
    assert {"path", "name"} <= set(shell.reads)
    assert {ANY_FILE, "file:data.csv"} <= shell.effects
    assert BARRIER in cell("get_ipython().run_line_magic('cd', 'data')").effects
    assert PYPLOT in cell("get_ipython().run_line_magic('matplotlib', 'inline')").effects
    assert ENV in cell("os.environ['X'] = '1'").effects
    assert BARRIER in cell("os.chdir('data')").effects


def test_the_last_expression_is_shown_unless_silenced() -> None:
    assert cell("x = 1\nx").last_expr
    assert not cell("x = 1\nx;").last_expr
    assert not cell("x = 1").last_expr


def test_syntax_error_names_the_step_and_the_cell_line() -> None:
    with pytest.raises(FlowDefinitionError, match=r"step 'bad': syntax error on line 3 of its cell"):
        parse_cell("x = 1\ny = (\n", step="bad", first_line=2)


# -- binding in notebook order ----------------------------------------------------------------------


def test_a_read_binds_to_the_nearest_earlier_writer_never_a_later_one() -> None:
    plan = plan_of("x = 1", "y = x * 10", "x = 5", "z = x")
    assert waits(plan, "c2") == {"c1"}
    assert waits(plan, "c4") == {"c3"}
    assert waits(plan, "c3") == set()  # re-assigning is a new version, not a dependency
    assert plan.final["x"] == "c3" and plan.final["y"] == "c2"


def test_augmenting_in_two_cells_is_a_chain_not_a_cycle() -> None:
    plan = plan_of("x = 0", "x += 1", "x += 1", "L = [1, 2, 3]", "L = [n for n in L if n > 1]",
                   "L = [n for n in L if n > 2]")  # fmt: skip
    assert waits(plan, "c2") == {"c1"} and waits(plan, "c3") == {"c2"}
    assert waits(plan, "c5") == {"c4"} and waits(plan, "c6") == {"c5"}


def test_imports_and_definitions_are_writes() -> None:
    plan = plan_of("import numpy as np", "def f(v):\n    return np.sqrt(v)", "y = f(4)")
    assert waits(plan, "c3") == {"c1", "c2"}  # f reads np when called in c3


def test_a_mutation_waits_for_earlier_readers_of_the_version_it_changes() -> None:
    plan = plan_of("L = [1, 2]", "n = len(L)", "m = L[0]", "L.append(3)", "k = len(L)")
    assert waits(plan, "c4") == {"c1", "c2", "c3"}  # write after read
    assert waits(plan, "c5") == {"c4"}
    pd = plan_of("import pandas as pd", "df = pd.DataFrame({'a': [1.0, None]})", "df.dropna(inplace=True)",
                 "n = len(df)")  # fmt: skip
    assert waits(pd, "c4") == {"c3"}


def test_calls_on_modules_do_not_mutate_the_module_but_may_mutate_arguments() -> None:
    plan = plan_of("import numpy as np", "a = np.arange(5)", "np.random.shuffle(a)", "b = np.sum(a)",
                   "print(a)", "c = a.mean()")  # fmt: skip
    assert "np" not in plan.cells["c3"].outputs and "a" in plan.cells["c3"].outputs
    assert waits(plan, "c4") >= {"c3"}
    assert "a" not in plan.cells["c5"].outputs  # print never changes its arguments
    assert waits(plan, "c6") == {"c3"}  # mean() is pure: c5 and c6 may overlap


def test_fitting_a_model_changes_the_model_not_its_data() -> None:
    plan = plan_of("X, y = [[0], [1]], [0, 1]", "from sklearn.linear_model import LogisticRegression",
                   "a = LogisticRegression()", "b = LogisticRegression()", "a.fit(X, y)", "b.fit(X, y)")  # fmt: skip
    assert "a" in plan.cells["c5"].outputs and "X" not in plan.cells["c5"].outputs
    assert "c5" not in waits(plan, "c6")  # two models train in parallel


def test_conditional_writes_pass_the_previous_version_through() -> None:
    plan = plan_of("x = 1", "if flag:\n    x = 2", "y = x")
    assert "c1" in waits(plan, "c2")


def test_functions_read_globals_where_they_are_called() -> None:
    plan = plan_of("def scaled(v):\n    return v * factor", "factor = 10", "y = scaled(2)",
                   "counter = 0", "def bump():\n    global counter\n    counter += 1", "bump()", "seen = counter")  # fmt: skip
    assert waits(plan, "c3") == {"c1", "c2"}  # factor comes from c2, defined after the function
    assert "counter" in plan.cells["c6"].outputs  # calling bump() writes counter
    assert waits(plan, "c7") == {"c6"}


def test_hidden_state_runs_in_notebook_order() -> None:
    plan = plan_of(
        "import numpy as np\nimport matplotlib.pyplot as plt", "np.random.seed(0)", "a = np.random.rand(2)",
        "b = np.random.rand(2)", "plt.figure()\nplt.plot([1])", "plt.figure()\nplt.plot([2])",
        "np.save('a.npy', a)", "c = np.load('a.npy')", "d = 1",
    )  # fmt: skip
    assert "c2" in waits(plan, "c3") and "c3" in waits(plan, "c4")
    assert "c5" in waits(plan, "c6")
    assert "c7" in waits(plan, "c8")
    assert waits(plan, "c9") == set()


def test_draws_before_any_seed_stay_parallel() -> None:
    plan = plan_of("import random", "a = random.random()", "b = random.random()")
    assert RNG not in plan.cells["c2"].effects and "c2" not in waits(plan, "c3")


def test_a_barrier_orders_everything_around_it() -> None:
    plan = plan_of("a = 1", "b = 2", "import os\nos.chdir('/tmp')", "c = 3")
    assert waits(plan, "c3") >= {"c1", "c2"} and waits(plan, "c4") == {"c3"}


def test_in_order_chains_every_cell_and_after_must_follow_notebook_order() -> None:
    plan = plan_of("a = 1", "b = 2", "c = 3", in_order=True)
    assert waits(plan, "c2") == {"c1"} and waits(plan, "c3") == {"c2"}
    nodes = [Node("c1", "cell [1] (step c1)", cell("a = 1"), ("c2",)), Node("c2", "cell [2] (step c2)", cell("b = 1"))]
    with pytest.raises(FlowDefinitionError, match=r"cell \[1\] \(step c1\) runs --after 'c2'.*cell \[2\]"):
        bind(nodes, external={}, namespace={})


def test_a_late_definition_is_named_when_it_fails() -> None:
    plan = plan_of("y = x + 1", "x = 1")
    assert plan.cells["c1"].late == {"x": "cell [2] (step c2)"}


# -- the registry and cell functions ----------------------------------------------------------------


def registry(ns: dict[str, object]) -> tuple[flownb.Flow, CellRegistry]:
    flow = flownb.Flow("cells", db=":memory:")
    return flow, CellRegistry(flow, lambda: ns)


def test_cells_run_with_the_versions_they_read() -> None:
    flow, reg = registry({})
    for i, src in enumerate(["x = 1", "y = x * 10", "x = 5", "L = [1, 2]\nL.append(3)", "n = len(L)"], 1):
        reg.define(CellDef(f"c{i}", src, "", ("cell", f"id{i}"), {}, number=i))
    run = flow.run().wait(30)
    assert run.status == "succeeded", run.error
    assert run.outputs["c2"] == {"y": 10} and run.outputs["c5"] == {"n": 3}
    with pytest.raises(FlowDefinitionError, match="already taken"):
        reg.define(CellDef("c1", "x = 2", "", ("cell", "elsewhere"), {}))


def test_a_name_read_before_any_cell_defines_it_names_the_cells() -> None:
    flow, reg = registry({})
    reg.define(CellDef("c1", "y = x + 1", "", ("cell", "a"), {}, number=1))
    reg.define(CellDef("c2", "x = 1", "", ("cell", "b"), {}, number=2))
    run = flow.run().wait(30)
    assert run.status == "failed"
    assert "cell [1] (step c1) reads it, and no earlier cell defines it (cell [2] (step c2) assigns it later" in str(
        run.error
    )


def test_redefining_a_cell_keeps_its_place_in_the_order() -> None:
    flow, reg = registry({})
    reg.define(CellDef("a", "x = 1", "", ("cell", "a"), {}))
    reg.define(CellDef("b", "y = x", "", ("cell", "b"), {}))
    reg.define(CellDef("a", "x = 2", "", ("cell", "a"), {}))
    assert reg.ordered() == ["a", "b"]
    assert flow.steps["b"].deps == frozenset({"a"})
    # the same cell under a new name replaces its old step
    reg.define(CellDef("first", "x = 3", "", ("cell", "a"), {}))
    assert reg.ordered() == ["first", "b"] and "a" not in flow.steps


def test_remote_callable_runs_the_cell_from_source_after_pickling() -> None:
    import math

    ns = {"math": math, "scale": 3}
    flow, reg = registry(ns)
    reg.define(CellDef("src", "vals = [1, 4]", "", ("cell", "s"), {}))
    reg.define(CellDef("root", "roots = [math.sqrt(v) * scale for v in vals]", "", ("cell", "r"), {}))
    fn = flow.steps["root"].fn
    remote, kwargs = fn.__flownb_remote__({"src": {"vals": [1, 4, 9]}})
    assert pickle.loads(pickle.dumps(remote))(**kwargs) == {"roots": [3.0, 6.0, 9.0]}


def test_a_flow_in_order_chains_its_steps_as_defined() -> None:
    flow = flownb.Flow("ordered", db=":memory:", in_order=True)
    seen: list[str] = []

    @flow.step
    def first() -> None:
        seen.append("first")

    @flow.step
    def second() -> None:
        seen.append("second")

    assert flow.graph().deps["second"] == frozenset({"first"})
    assert flow.run().wait(30).status == "succeeded" and seen == ["first", "second"]
    flow.in_order = False
    assert flow.graph().deps["second"] == frozenset()


def test_what_is_done_through_a_file_handle_touches_its_file() -> None:
    plan = plan_of("handle = open('log.txt', 'w')", "handle.write('x')\nhandle.close()",
                   "text = open('log.txt').read()")  # fmt: skip
    assert "c2" in waits(plan, "c3")


def test_flow_options_refuse_booleans_for_counts() -> None:
    with pytest.raises(FlowDefinitionError, match="max_concurrency"):
        flownb.Flow("f", max_concurrency=True)
    with pytest.raises(FlowDefinitionError, match="max_runs"):
        flownb.Flow("f", max_runs=True)


def test_changing_what_the_cell_itself_bound_reads_no_earlier_version() -> None:
    plan = plan_of("with open('a.txt', 'w') as f:\n    f.write('x')", "with open('b.txt', 'w') as f:\n    f.write('y')")
    assert plan.cells["c2"].data == []  # its own f, not c1's


def test_listing_a_directory_waits_for_the_files_written_before() -> None:
    plan = plan_of("from pathlib import Path", "df_path = 'output/high_scores.csv'\nopen('output/high_scores.csv', 'w')",
                   "sizes = {p.name: p.stat().st_size for p in Path('output').iterdir()}")  # fmt: skip
    assert "c2" in waits(plan, "c3")
