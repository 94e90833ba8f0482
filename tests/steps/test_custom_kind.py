"""A step kind of your own: flownb.register_kind, with the README's `sql` kind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import duckdb
import pytest

import flownb


class SqlKind:
    """A DuckDB query on a file of yours; the step's output is the result as a DataFrame."""

    name = "sql"
    main_option = "query"
    required = ("query",)
    optional = {"database": ":memory:", "values": {}}

    async def execute(self, ctx: Any) -> Any:
        query, database = ctx.options["query"], ctx.options["database"]
        values = ctx.render(ctx.options["values"])  # templates fill the values, never the SQL

        def ask() -> Any:
            with duckdb.connect(database, read_only=database != ":memory:") as con:
                return con.execute(query, values).df()

        return await asyncio.to_thread(ask)  # never block the engine's loop


@pytest.fixture(autouse=True)
def sql_kind() -> None:
    flownb.register_kind(SqlKind())


def test_a_custom_kind_runs_with_templates_dependencies_and_records(tmp_path: Path) -> None:
    data = tmp_path / "sales.duckdb"
    with duckdb.connect(str(data)) as con:
        con.execute("CREATE TABLE sales AS SELECT * FROM (VALUES ('DE', 10), ('FR', 5), ('DE', 7)) t(country, amount)")
    flow = flownb.Flow("custom", db=":memory:")

    @flow.step
    def country(params: dict[str, Any]) -> str:
        return str(params["country"])

    flow.step(name="total", kind="sql", database=str(data),
              query="SELECT sum(amount) AS total FROM sales WHERE country = $country",
              values={"country": "{{ country }}"})  # fmt: skip
    assert flow.steps["total"].deps == frozenset({"country"})  # the template's reference, found by default
    run = flow.run({"country": "DE"}).wait(30)
    assert run.status == "succeeded", run.error
    assert int(run.outputs["total"]["total"][0]) == 17
    assert run.steps.set_index("step").loc["total", "kind"] == "sql"


def test_a_custom_kind_refuses_options_it_does_not_take() -> None:
    flow = flownb.Flow("custom_bad", db=":memory:")
    with pytest.raises(flownb.FlowDefinitionError, match=r"unknown option\(s\) 'databse' \(did you mean 'database'\?\)"):
        flow.step(name="q", kind="sql", query="SELECT 1", databse="x.duckdb")


def test_a_kind_needs_a_name_and_an_async_execute() -> None:
    class Broken:
        name = "broken"

        def execute(self, ctx: Any) -> Any:
            return 1

    with pytest.raises(flownb.FlowDefinitionError, match="async def execute"):
        flownb.register_kind(Broken())
    with pytest.raises(flownb.FlowDefinitionError, match="identifier"):
        flownb.register_kind(type("Nameless", (), {"name": "no good"})())
