"""Bad step names and options are refused when defined, with one clear message."""

from __future__ import annotations

import math
from typing import Any

import pytest

import flownb
from flownb import FlowDefinitionError


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a\n", "not an identifier"),
        ("a\nb", "not an identifier"),
        ("class", "Python keyword"),
        ("None", "Python keyword"),
        ("True", "Python keyword"),
        ("lambda", "Python keyword"),
        ("__import__", "reserved for Python"),
        ("__init__", "reserved for Python"),
    ],
)
def test_bad_step_names_are_refused(name: str, why: str) -> None:
    flow = flownb.Flow("names", db=":memory:")
    with pytest.raises(FlowDefinitionError, match=why) as info:
        flow.shell(name, "true")
    message = str(info.value)
    assert repr(name) in message and "\n" not in message
    assert name not in flow.steps


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("timeout", True),
        ("retry_delay", math.nan),
        ("retry_delay", math.inf),
        ("max_delay", math.inf),
        ("max_delay", math.nan),
        ("jitter", math.nan),
        ("retry_delay", True),
        ("retries", True),
        ("retries", False),
        ("concurrency", True),
        ("max_iterations", True),
    ],
)
def test_nan_inf_and_bool_options_are_refused(option: str, value: Any) -> None:
    flow = flownb.Flow("opts", db=":memory:")
    with pytest.raises(FlowDefinitionError, match=rf"step 'ok' of flow 'opts': {option} must be") as info:
        flow.shell("ok", "true", **{option: value})
    assert "\n" not in str(info.value)
    assert "ok" not in flow.steps


def test_good_names_and_options_still_pass() -> None:
    flow = flownb.Flow("fine", db=":memory:")
    flow.shell("_private", "true", timeout=1, retries=2, retry_delay=0, max_delay=1.5, concurrency=2)
    flow.shell("match", "true")  # a soft keyword is a valid name
    assert {"_private", "match"} <= set(flow.steps)
