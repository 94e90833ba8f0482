"""Schedules fired by real servers: one run per fire time across two servers on one store and
across restarts, and missed fires caught up once."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import flownb
from tests.server.conftest import FLOWDEFS, wait_for

pytestmark = pytest.mark.slow

RUN_ID = re.compile(r"^(?P<name>.+)-(?P<stamp>\d{8}T\d{6}Z)$")


def _schedule_runs(db: str) -> list[tuple[str, int]]:
    """(run id, how many run_started it has) of every run a schedule started."""
    df = flownb.sql(
        "SELECT run_id, count(*) FILTER (WHERE event = 'run_started') AS starts FROM events "
        "WHERE run_id IN (SELECT run_id FROM runs WHERE trigger = 'schedule') GROUP BY run_id ORDER BY run_id",
        db=db,
    )
    return [(str(r), int(n)) for r, n in df.itertuples(index=False)]


def _fires(runs: list[tuple[str, int]], name: str) -> list[datetime]:
    out = []
    for run_id, _ in runs:
        m = RUN_ID.match(run_id)
        assert m, run_id
        if m["name"] == name:
            out.append(datetime.strptime(m["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
    return out


def test_every_second_once_with_two_servers_and_a_restart(db: str, server_process, tmp_path) -> None:
    cli = [sys.executable, "-m", "flownb.cli", "schedule"]
    added = subprocess.run([*cli, "add", "ticker", "* * * * * *", "--db", db, "--param", "n=1"],
                           capture_output=True, text=True, check=False, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "schedule ticker: flow ticker" in added.stdout
    target = [f"{FLOWDEFS}:ticker"]

    def count() -> int:
        return len(_schedule_runs(db))

    a = server_process(target, db)
    b = server_process(target, db)  # a second server on the same store
    wait_for(lambda: count() >= 4, "4 scheduled runs with two servers", timeout=120)
    a.stop()  # a restart: one server goes, comes back
    seen = count()
    wait_for(lambda: count() >= seen + 2, "runs while one server is down", timeout=120)
    a = server_process(target, db, port=a.port)
    seen = count()
    wait_for(lambda: count() >= seen + 3, "runs after the restart", timeout=120)
    a.stop()
    b.stop()

    runs = _schedule_runs(db)
    assert all(starts == 1 for _, starts in runs), [r for r in runs if r[1] != 1]  # no run started twice
    fires = _fires(runs, "ticker")
    assert len(fires) == len(set(fires)) == len(runs) >= 9  # one run per fire time, none twice
    assert all(f.microsecond == 0 for f in fires)
    params = flownb.sql("SELECT DISTINCT params FROM runs WHERE trigger = 'schedule'", db=db)["params"]
    assert list(params) == ['{"n":1}']
    listed = subprocess.run([*cli, "list", "--db", db, "--json"], capture_output=True, text=True, check=True)
    assert '"name": "ticker"' in listed.stdout and '"next_fire"' in listed.stdout
    removed = subprocess.run([*cli, "remove", "ticker", "--db", db], capture_output=True, text=True, check=False)
    assert removed.returncode == 0 and "removed schedule ticker" in removed.stdout
    again = subprocess.run([*cli, "remove", "ticker", "--db", db], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "no schedule 'ticker'" in again.stderr


def test_a_missed_fire_is_caught_up_once(serve, db: str) -> None:
    quick = flownb.Flow("ticker", db=db)
    quick.schedule("0 * * * *", name="hourly")
    quick.schedule("0 * * * *", name="skipped", catchup="none")
    quick.schedule("* * * * * *", name="heartbeat")  # shows the loop has gone past its catch-up
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    flownb.sql("UPDATE schedules SET last_fire = ? WHERE name IN ('hourly', 'skipped')", db=db,
               params=[three_hours_ago])
    latest_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    def beats() -> int:
        return len(_fires(_schedule_runs(db), "heartbeat"))

    for _ in range(2):  # the first start catches up; the restart must not again
        server = serve("ticker")
        seen = beats()
        wait_for(lambda: beats() >= seen + 2, "the schedule loop to go on after its catch-up")
        server.stop()
    runs = _schedule_runs(db)
    assert _fires(runs, "hourly") == [latest_hour] or (
        # the hour turned while the test ran: that fire is due, not missed
        len(_fires(runs, "hourly")) == 2 and _fires(runs, "hourly")[0] == latest_hour
    )
    assert all(f > latest_hour for f in _fires(runs, "skipped"))  # the missed ones never ran
    assert all(starts == 1 for _, starts in runs)
