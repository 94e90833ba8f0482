"""The approvers' web page in headless Chromium: sign in, watch a run's graph change, approve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import flownb
from tests.browser.lab import chromium_page, ensure_chromium
from tests.server.conftest import TOKEN, client, wait_for_status

ARTIFACTS = Path(__file__).parents[1] / "browser" / "artifacts" / "server_page"  # git-ignored, kept by CI
TIMEOUT_MS = 60_000  # each wait ends as soon as its condition holds

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _node_text(page, step: str) -> str:
    return str(page.locator(f"#graph svg g#flownb_step_{step}").text_content(timeout=TIMEOUT_MS))


def test_sign_in_watch_the_graph_and_approve(serve, db: str, tmp_path: Path) -> None:
    try:
        chromium = ensure_chromium()
    except (RuntimeError, OSError) as exc:
        pytest.fail(f"the browser tests need Chromium at /usr/bin/chromium: {exc}", pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = serve("gated")
    api = client(server.url)
    with chromium_page(chromium, tmp_path) as page:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url)
        # a wrong token is refused, and the form says so
        page.fill("#token", "not-the-token")
        page.click("button[type=submit]")
        page.locator("#login-error").wait_for(state="visible")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.locator("#runs-table").wait_for()
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["flownb_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict" and TOKEN not in session["value"]
        assert page.evaluate("document.cookie") == ""  # scripts cannot read it

        run_id = api.post("/api/flows/gated/runs", json={"params": {"n": 21}}).json()["run_id"]
        page.goto(f"{server.url}/#run={run_id}")
        # the graph follows the run's events: the gate comes to wait after prepare succeeded
        page.wait_for_function(
            "() => /waiting/.test(document.querySelector('#graph svg g#flownb_step_publish_ok')?.textContent || '')"
        )
        assert "succeeded" in _node_text(page, "prepare") and "pending" in _node_text(page, "publish")
        page.wait_for_function("() => document.querySelector('#run-status')?.dataset.status === 'waiting'")
        card = page.locator(".approval[data-step=publish_ok]")
        assert "Publish 21 rows?" in card.inner_text()
        page.locator("#step-details").get_by_text("prepare: stdout").click()
        assert "preparing 21" in page.locator("#step-details").inner_text()
        page.screenshot(path=str(ARTIFACTS / "waiting.png"), full_page=True)

        card.get_by_label("your name").fill("ana")
        card.locator("textarea").fill("looks right")
        card.get_by_role("button", name="Approve").click()
        page.wait_for_function("() => document.querySelector('#run-status')?.dataset.status === 'succeeded'")
        page.wait_for_function(
            "() => /succeeded/.test(document.querySelector('#graph svg g#flownb_step_publish')?.textContent || '')"
        )
        assert re.search(r"approved by ana · via web", card.inner_text())
        assert "looks right" in card.inner_text()
        page.screenshot(path=str(ARTIFACTS / "approved.png"), full_page=True)

        # the runs list shows it, and keeps it under its status
        page.locator(f"#runs-table tr[data-run-id='{run_id}']").wait_for()
        page.select_option("#filter-status", "failed")
        page.locator("#runs-empty").wait_for(state="visible")
        page.select_option("#filter-status", "succeeded")
        page.locator(f"#runs-table tr[data-run-id='{run_id}']").wait_for()

    run = wait_for_status(api, run_id, {"succeeded"})
    assert run["steps"][-1]["status"] == "succeeded"
    approvals = flownb.sql("SELECT decision, via, comment FROM approvals WHERE run_id = ?", db=db, params=[run_id])
    assert approvals.to_dict(orient="records") == [{"decision": "approved", "via": "web", "comment": "looks right"}]
