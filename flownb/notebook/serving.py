"""``%flow serve`` and ``%flow schedule``: the kernel's flows served, the same way ``flownb serve`` does.

The server runs on threads of its own (uvicorn's and the schedule loop's), so the
kernel stays free; one per kernel. Runs it starts go through the session, which
binds the cells first, exactly as ``%flow run`` does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from flownb.errors import FlownbError

if TYPE_CHECKING:
    from flownb.engine.run import Run
    from flownb.notebook.session import Session

#: the kernel's server (flownb.server.app.Server: the notebook layer sits below the server's)
_SERVER: Any = None
_LOCK = threading.Lock()


def serve(session: Session, *, flow: str | None, host: str, port: int, stop: bool) -> Any:
    """Start serving the session's flows (``flow``: only that one) in the background; or stop."""
    global _SERVER
    import flownb.api

    with _LOCK:
        if stop:
            if _SERVER is None:
                raise FlownbError("no server runs in this kernel; start one with %flow serve")
            url = _SERVER.url
            _SERVER.stop()
            print(f"stopped serving on {url}")
            _SERVER = None
            return None
        if _SERVER is not None:
            raise FlownbError(f"this kernel serves already on {_SERVER.url}; stop it with %flow serve --stop")
        names = [flow] if flow else [n for n, f in session.flows.items() if f.steps]
        if not names:
            raise FlownbError("no flow has steps yet: define %%step cells first")
        flows = [session.flow(n) for n in names]
        starters = {f.name: _starter(session, f.name) for f in flows}
        server = flownb.api.serve(flows, db=flows[0].db, host=host, port=port, starters=starters)
        _SERVER = server
    served = ", ".join(server.flows.names)
    print(f"serving {served} on {server.url} (the page, /api, /hooks); %flow serve --stop ends it")
    return server


def _starter(session: Session, flow: str) -> Any:
    """Runs of the flow start through the session, which binds the cells first (as %flow run)."""

    def start(params: dict[str, Any], trigger: str, run_id: str | None) -> Run:
        return session.start(flow, params=params, trigger=trigger, run_id=run_id)

    return start


def schedule(
    session: Session, flow: str | None, *, cron: str | None, tz: str, params: dict[str, Any], name: str | None,
    catchup: str, remove: str | None,
) -> Any:  # fmt: skip
    """Define a schedule of the flow (``Flow.schedule``), remove one, or list the flow's."""
    import pandas as pd

    from flownb.store import open_store, schedules

    f = session.flow(flow)
    store = open_store(f.db)
    if remove is not None:
        if not schedules.remove(store, remove):
            raise FlownbError(f"no schedule {remove!r}; %flow schedule lists them")
        print(f"removed schedule {remove}")
        return None
    if cron is not None:
        s = f.schedule(cron, tz=tz, params=params, name=name, catchup=catchup)
        if _SERVER is not None and _SERVER.scheduler is not None:
            _SERVER.scheduler.wake()
        print(f"schedule {s.name}: {s.cron!r} in {s.tz}; flownb serve (or %flow serve) fires it")
    return pd.DataFrame([s.to_json() for s in schedules.all_schedules(store, flow=f.name)])
