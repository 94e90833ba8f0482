"""Defining flows: dependencies, validation, redefinition, levels."""

from __future__ import annotations

import pytest

import flownb
from flownb import CycleError, FlowDefinitionError, TemplateError


def test_dependencies_come_from_parameters_templates_and_after() -> None:
    flow = flownb.Flow("deps", db=":memory:")

    @flow.step
    def a() -> int:
        return 1

    @flow.step
    def b(a: int, params: dict[str, int]) -> int:
        return a

    flow.approval("c", "ok {{ b }}?", after=["a"])
    graph = flow.graph()
    assert graph.deps["b"] == {"a"}
    assert graph.deps["c"] == {"a", "b"}
    assert graph.levels == {"a": 0, "b": 1, "c": 2}


def test_cycle_error_shows_the_path_and_nothing_is_registered() -> None:
    flow = flownb.Flow("cyc", db=":memory:")

    @flow.step
    def a(c: int) -> int:
        return c

    @flow.step
    def b(a: int) -> int:
        return a

    with pytest.raises(CycleError, match=r"c -> b -> a -> c"):

        @flow.step
        def c(b: int) -> int:
            return b

    assert set(flow.steps) == {"a", "b"}


def test_unknown_dependency_suggests_the_closest_name() -> None:
    flow = flownb.Flow("unknown", db=":memory:")

    @flow.step
    def users() -> list[int]:
        return []

    @flow.step
    def joined(user: list[int]) -> int:
        return len(user)

    with pytest.raises(FlowDefinitionError, match=r"step 'joined'.*'user'.*did you mean 'users'"):
        flow.run()


def test_duplicate_name_from_another_function_is_refused() -> None:
    flow = flownb.Flow("dup", db=":memory:")

    def first() -> int:
        return 1

    def second() -> int:
        return 2

    flow.step(first, name="x")
    with pytest.raises(FlowDefinitionError, match=r"'x' is already taken.*first"):
        flow.step(second, name="x")
    assert flow.steps["x"].fn is first


def test_same_function_redefined_replaces_the_step() -> None:
    flow = flownb.Flow("redef", db=":memory:")
    for value in (1, 2):

        def x(v: int = value) -> int:
            return v

        flow.step(x)
    assert flow.run().wait().outputs["x"] == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be a non-negative integer"),
        ({"backoff": "fibonacci"}, "backoff must be one of"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"on_failure": "ignore"}, "on_failure must be 'stop' or 'continue'"),
        ({"concurrency": 0}, "concurrency must be a positive integer"),
        ({"when": "params.x >"}, "does not parse"),
        ({"retry_on": "ValueError"}, "retry_on must be exception classes"),
    ],
)
def test_invalid_options_name_the_step(options: dict[str, object], message: str) -> None:
    flow = flownb.Flow("bad", db=":memory:")

    def s() -> None:
        return None

    with pytest.raises(FlowDefinitionError, match=message) as info:
        flow.step(s, **options)  # type: ignore[arg-type]
    assert "'s'" in str(info.value)
    assert flow.steps == {}


def test_unknown_kind_option_is_refused_with_a_suggestion() -> None:
    flow = flownb.Flow("kindopt", db=":memory:")
    with pytest.raises(FlowDefinitionError, match=r"unknown option.*'mesage'.*did you mean 'message'"):
        flow.step(name="gate", kind="approval", mesage="ok?")


def test_unknown_kind_lists_the_kinds() -> None:
    flow = flownb.Flow("kinds", db=":memory:")
    with pytest.raises(FlowDefinitionError, match=r"unknown step kind 'sql'.*approval"):
        flow.step(name="q", kind="sql")


def test_bad_names_and_empty_flows() -> None:
    flow = flownb.Flow("names", db=":memory:")
    with pytest.raises(FlowDefinitionError, match="not an identifier"):
        flow.step(lambda: 1, name="two words")
    with pytest.raises(FlowDefinitionError, match="reserved"):
        flow.step(lambda: 1, name="params")
    with pytest.raises(FlowDefinitionError, match="has no steps"):
        flow.run()
    with pytest.raises(FlowDefinitionError, match="durability"):
        flownb.Flow("x", durability="maybe")  # type: ignore[arg-type]


def test_template_errors_are_flownb_errors() -> None:
    flow = flownb.Flow("tmpl", db=":memory:")
    with pytest.raises(FlownbErrorTypes):
        flow.step(name="gate", kind="approval", message="{{ unclosed")


FlownbErrorTypes = (FlowDefinitionError, TemplateError)


def test_fallback_must_exist_and_use_only_upstream_inputs() -> None:
    flow = flownb.Flow("fb", db=":memory:")

    @flow.step
    def a() -> int:
        return 1

    @flow.step(fallback="missing")
    def b(a: int) -> int:
        return a

    with pytest.raises(FlowDefinitionError, match="fallback 'missing'"):
        flow.graph()


def test_a_flow_that_fails_validation_writes_nothing(db: str) -> None:
    flow = flownb.Flow("nothing_written", db=db)

    @flow.step
    def a(missing: int) -> int:
        return missing

    with pytest.raises(FlowDefinitionError):
        flow.run()
    assert flownb.sql("SELECT count(*) AS n FROM events", db=db)["n"][0] == 0
