"""%flow schedule and %flow serve in an IPython shell: thin magics over Flow.schedule and the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flownb
from tests.server.conftest import TOKEN, client, wait_for_status


@pytest.fixture
def shell(db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    from flownb.notebook.headless import headless_shell

    monkeypatch.setenv("FLOWNB_DB", db)
    monkeypatch.setenv("FLOWNB_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    sh = headless_shell()
    sh.run_line_magic("load_ext", "flownb")
    assert sh.run_cell("%%step double\ndoubled = params.get('n', 1) * 2").success
    yield sh
    sh.run_cell("%flow serve --stop")
    sh.run_line_magic("unload_ext", "flownb")


def test_flow_schedule_defines_lists_and_removes(shell: Any, db: str) -> None:
    done = shell.run_cell('table = %flow schedule "*/5 * * * *" --tz Europe/Paris --param n=3')
    assert done.success
    table = shell.user_ns["table"]
    assert table[["name", "cron", "tz"]].values.tolist() == [["notebook", "*/5 * * * *", "Europe/Paris"]]
    assert table["params"].tolist() == [{"n": 3}]
    for bad in ('%flow schedule "61 * * * *"', '%flow schedule "* * * * *" --tz Nowhere/Land'):
        refused = shell.run_cell(bad)
        assert not refused.success and type(refused.error_in_exec).__name__ == "UsageError"
    assert len(flownb.sql("SELECT * FROM schedules", db=db)) == 1  # nothing bad was stored
    assert shell.run_cell("%flow schedule --remove notebook").success
    assert flownb.sql("SELECT * FROM schedules", db=db).empty
    assert not shell.run_cell("%flow schedule --remove notebook").success


def test_flow_serve_serves_the_kernels_flows_in_the_background(shell: Any) -> None:
    assert shell.run_cell("server = %flow serve --port 0").success
    server = shell.user_ns["server"]
    api = client(server.url)
    assert [f["name"] for f in api.get("/api/flows").json()["flows"]] == ["notebook"]
    assert not shell.run_cell("%flow serve --port 0").success  # one server per kernel
    started = api.post("/api/flows/notebook/runs", json={"params": {"n": 21}})
    assert started.status_code == 202
    run = wait_for_status(api, started.json()["run_id"], {"succeeded"})
    assert run["trigger"] == "api"
    assert shell.run_cell("%flow serve --stop").success
    assert not shell.run_cell("%flow serve --stop").success
