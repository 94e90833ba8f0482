"""The ``/api`` routes (DESIGN §2, "Serving flows"); auth and rate limit come before them (app.py).

Every input is checked before anything happens: a refused request starts nothing
and decides nothing. Blocking work (the store, the engine's loop) runs on
Starlette's thread pool, never on the server's event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from flownb.errors import FlownbError
from flownb.server import events
from flownb.server.http import ApiError, json_object, json_response
from flownb.store import listing, schedules
from flownb.store.events import RUN_ENDED, RunStatus

if TYPE_CHECKING:
    from starlette.requests import Request

    from flownb.server.app import ServerState

_STATUSES = frozenset(s.value for s in RunStatus)
_DECISIONS = {"approve": "approved", "reject": "rejected", "approved": "approved", "rejected": "rejected"}


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.flownb
    return state


async def list_flows(request: Request) -> Response:
    st = _state(request)

    def read() -> list[dict[str, Any]]:
        flows = st.flows.describe()
        by_flow: dict[str, list[dict[str, Any]]] = {}
        for s in schedules.all_schedules(st.store):
            by_flow.setdefault(s.flow, []).append(s.to_json())
        for f in flows:
            f["schedules"] = by_flow.get(f["name"], [])
        return flows

    return json_response({"flows": await run_in_threadpool(read)})


async def start_run(request: Request) -> Response:
    st = _state(request)
    name = request.path_params["flow"]
    st.flows.get(name)  # 404 before the body is read
    body = await json_object(request, allowed=frozenset({"params"}))
    run = await run_in_threadpool(st.flows.start, name, body.get("params"), trigger="api")
    return json_response({"run_id": run.id, "status": run.status}, 202)


async def get_run(request: Request) -> Response:
    st = _state(request)
    return json_response(await run_in_threadpool(st.runs.detail, request.path_params["run_id"]))


async def list_runs(request: Request) -> Response:
    st = _state(request)
    q = request.query_params
    unknown = sorted(set(q) - {"flow", "status", "since", "until", "limit", "cursor"})
    if unknown:
        raise ApiError(400, f"unknown query parameter {unknown[0]!r}; use flow, status, since, until, limit, cursor")
    statuses = tuple(s for s in (q.get("status") or "").split(",") if s)
    bad = [s for s in statuses if s not in _STATUSES]
    if bad:
        raise ApiError(400, f"status {bad[0]!r} is not a run status; use one of {', '.join(sorted(_STATUSES))}")
    where = listing.RunFilter(
        flow=q.get("flow") or None, statuses=statuses, since=_time(q, "since"), until=_time(q, "until")
    )
    limit = _limit(q.get("limit"))
    try:
        rows, cursor = await run_in_threadpool(listing.list_runs, st.store, where, limit=limit, cursor=q.get("cursor"))
    except listing.BadCursor as exc:
        raise ApiError(400, str(exc)) from None
    return json_response({"runs": rows, "next_cursor": cursor})


async def cancel_run(request: Request) -> Response:
    st = _state(request)
    run_id = request.path_params["run_id"]

    def cancel() -> dict[str, Any]:
        detail = st.runs.detail(run_id)  # 404 first
        if detail["status"] in RUN_ENDED or detail["status"] == RunStatus.INTERRUPTED:
            raise ApiError(409, f"run {run_id} has ended ({detail['status']}); there is nothing to cancel")
        handle = st.runs.handle(run_id)
        try:
            handle.cancel()
        except FlownbError as exc:
            raise ApiError(409, str(exc)) from None
        return {"run_id": run_id, "status": handle.status}

    return json_response(await run_in_threadpool(cancel), 202)


async def decide(request: Request) -> Response:
    st = _state(request)
    run_id, step = request.path_params["run_id"], request.path_params["step"]
    body = await json_object(request, allowed=frozenset({"decision", "comment", "by"}))
    decision = _DECISIONS.get(str(body.get("decision")))
    if decision is None:
        raise ApiError(400, 'decision must be "approve" or "reject"')
    comment, by = body.get("comment"), body.get("by")
    for field, value in (("comment", comment), ("by", by)):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{field} must be a string")
    via = "web" if request.scope.get("flownb.auth") == "cookie" else "api"

    def post() -> dict[str, Any]:
        detail = st.runs.detail(run_id)  # 404 first
        gate = next((a for a in detail["approvals"] if a["step"] == step), None)
        if gate is None or not gate["pending"]:
            waiting = ", ".join(detail["pending_approvals"]) or "none"
            why = (
                f"run {run_id} has ended ({detail['status']})" if detail["ended"]
                else f"step {step!r} of run {run_id} is not waiting for a decision"
                + (f" (it was {gate['decision']} by {gate['decided_by']})" if gate and gate["decision"] else "")
            )  # fmt: skip
            raise ApiError(409, f"{why}; waiting: {waiting}")
        handle = st.runs.handle(run_id)
        try:
            if decision == "approved":
                handle.approve(step, comment=comment, by=by or via, via=via)
            else:
                handle.reject(step, comment=comment, by=by or via, via=via)
        except FlownbError as exc:
            raise ApiError(409, str(exc)) from None
        return {"run_id": run_id, "step": step, "decision": decision}

    return json_response(await run_in_threadpool(post), 202)


async def run_events(request: Request) -> Response:
    st = _state(request)
    run_id = request.path_params["run_id"]
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isdigit() else 0
    detail = await run_in_threadpool(st.runs.detail, run_id)  # 404 first
    if after and after >= detail["last_seq"] and (detail["ended"] or detail["status"] == RunStatus.INTERRUPTED):
        return Response(status_code=204)  # a reconnect after the end: EventSource stops here
    handle = await run_in_threadpool(st.runs.handle, run_id)
    return StreamingResponse(
        events.stream(handle, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def run_graph(request: Request) -> Response:
    """The run's picture (SVG), as the page shows it."""
    from flownb.api import run_svg

    st = _state(request)
    run_id = request.path_params["run_id"]
    await run_in_threadpool(st.runs.detail, run_id)  # 404 first
    svg = await run_in_threadpool(run_svg, st.store, run_id)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


def _time(q: Any, name: str) -> datetime | None:
    text = q.get(name)
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ApiError(400, f"{name}={text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _limit(text: str | None) -> int:
    if text is None:
        return 50
    if not text.isdigit() or not 1 <= int(text) <= listing.MAX_LIMIT:
        raise ApiError(400, f"limit={text!r}: give a whole number from 1 to {listing.MAX_LIMIT}")
    return int(text)


ROUTES = [
    Route("/api/flows", list_flows, methods=["GET"]),
    Route("/api/flows/{flow}/runs", start_run, methods=["POST"]),
    Route("/api/runs", list_runs, methods=["GET"]),
    Route("/api/runs/{run_id}", get_run, methods=["GET"]),
    Route("/api/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/api/runs/{run_id}/approvals/{step}", decide, methods=["POST"]),
    Route("/api/runs/{run_id}/events", run_events, methods=["GET"]),
    Route("/api/runs/{run_id}/graph.svg", run_graph, methods=["GET"]),
]
