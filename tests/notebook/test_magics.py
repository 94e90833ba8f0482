"""%%step, %step, %flow and %%flowsql in a real kernel."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

PIPELINE = [
    "%%step users\nprint('loading users')\nusers = [1, 2, 3]",
    "%%step orders\norders = {'n': len(params['tag'])}",
    "%%step total --retries 1 --retry-delay 0.05\ntotal = sum(users) + helper + orders['n']\nextra = 5",
    "helper = 100",
]


def test_cells_run_as_steps_and_publish_their_outputs(kernel, store_path: Path) -> None:
    for cell in PIPELINE:
        kernel.execute(cell)
    steps = kernel.value("list(get_ipython().run_line_magic('flow', 'steps')['depends_on'])")
    assert steps == ["", "", "orders, users"]
    res = kernel.execute("%flow run --wait --param tag=abcd")
    assert "succeeded" in res["stdout"]
    assert kernel.value("[users, orders, total, extra]") == [[1, 2, 3], {"n": 4}, 110, 5]
    df = kernel.value(
        "get_ipython().run_cell_magic('flowsql', '', 'SELECT step, status FROM steps ORDER BY step').values.tolist()"
    )
    assert df == [["orders", "succeeded"], ["total", "succeeded"], ["users", "succeeded"]]
    # the step's print went to its panel and to the store, never to a cell's output
    assert not any("loading users" in s for s in kernel.streams)
    kernel.kill()
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        rows = con.execute("SELECT stdout FROM steps WHERE step = 'users'").fetchall()
        assert rows == [("loading users\n",)]
        assert con.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]
    finally:
        con.close()


def test_a_cell_run_again_redefines_its_step_and_another_cell_may_not_take_it(kernel) -> None:
    kernel.execute("%%step a\na = 1")
    kernel.execute("%%step a\na = 2")  # same origin (the step name, no cell id here): redefined
    kernel.execute("%flow run --wait")
    assert kernel.value("a") == 2
    res = kernel.execute("%step a --kind shell --command 'echo hi' --flow other", allow_error=True)
    assert res["error"] is None
    res = kernel.execute("%%step b --after nope\nb = 1\n", allow_error=True)
    assert res["error"] is None  # --after an unknown step is reported when the flow runs
    res = kernel.execute("%flow run --wait", allow_error=True)
    assert "UsageError" in res["error"] and "nope" in res["error"]


def test_usage_errors_are_one_line_and_help_answers(kernel) -> None:
    res = kernel.execute("%flow bogus", allow_error=True)
    assert res["error"].startswith("UsageError") and "Traceback" not in res["stdout"] + res["stderr"]
    res = kernel.execute("%%step bad --retries many\nx = 1", allow_error=True)
    assert "invalid positive_int value" in res["error"] or "retries" in res["error"]
    res = kernel.execute("%%step bad\nx = 1\ny = (\n", allow_error=True)
    assert "step 'bad'" in res["error"] and "line 3" in res["error"]
    for magic in ("%flow --help", "%flow run --help", "%step --help", "%%step --help\nx = 1", "%flowsql --help"):
        out = kernel.execute(magic)
        assert "usage:" in out["stdout"], magic


def test_tracebacks_point_at_the_cell_and_top_level_await_works(kernel) -> None:
    kernel.execute("%%step waits\nimport asyncio\nawait asyncio.sleep(0.01)\nwaits = 'done'")
    kernel.execute("%%step boom\nx = 1\nraise ValueError('bad ' + waits)")
    res = kernel.execute("%flow run --wait", allow_error=True)
    assert "failed" in res["error"]
    tb = kernel.value(
                      "__import__('flownb').sql(\"SELECT traceback FROM steps WHERE step = 'boom'\").iloc[0, 0]")
    assert '<step boom>", line 3' in tb and "raise ValueError('bad ' + waits)" in tb
    assert kernel.value("waits") == "done"


def test_sql_values_travel_as_parameters(kernel) -> None:
    kernel.execute("%%step one\none = 1")
    kernel.execute("%flow run --wait")
    kernel.execute("name = \"notebook' OR '1'='1\"\nreal = 'notebook'")
    bad = kernel.execute("%%flowsql --param name\nSELECT count(*) AS n FROM runs WHERE flow = $name")
    assert "0" in bad["data"][0]["text/plain"]
    good = kernel.value(
        "get_ipython().run_cell_magic('flowsql', '--param real', 'SELECT count(*) AS n FROM runs WHERE flow = $real')"
        ".iloc[0, 0].item()"
    )
    assert good == 1
    res = kernel.execute("%flowsql --param missing SELECT 1", allow_error=True)
    assert "missing" in res["error"]


def test_templates_and_sql_parameters_reach_flownb_unexpanded(kernel) -> None:
    kernel.execute("%%step rows\nrows = [1, 2, 3]")
    kernel.execute("%step gate --kind approval --message 'Publish {{ rows | length }} rows?'")
    assert kernel.value("list(get_ipython().run_line_magic('flow', 'steps').query('step == \"gate\"').depends_on)") == [
        "rows"
    ]
    kernel.execute("%flow run --wait --approve gate")
    msg = kernel.value("__import__('flownb').sql('SELECT message FROM approvals').message[0]")
    assert msg == "Publish 3 rows?"
    kernel.execute("flow_name = 'notebook'")
    out = kernel.execute("%flowsql --param flow_name SELECT count(*) AS n FROM runs WHERE flow = $flow_name")
    assert out["data"][0]["text/plain"].split()[-1] == "1"
