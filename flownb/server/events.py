"""``GET /api/runs/{run_id}/events``: a run's events as Server-Sent Events, to its end.

Each SSE message is one event of the run, ``id:`` its ``seq`` and ``data:`` its
JSON (``run_id, seq, ts, step, event, payload``), in order, from the first
(or after ``Last-Event-ID``, so a client that reconnects misses nothing and sees
nothing twice). The stream closes after the run's ``run_ended``. A reconnect
after the end gets 204 No Content, which tells a browser's ``EventSource`` to
stop reconnecting.

The events come from ``Run.events()`` (whichever process owns the run), read on
a thread of their own; a comment line every :data:`KEEPALIVE` seconds keeps
proxies from closing a quiet stream (a run waiting at a gate).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson

KEEPALIVE = 15.0
#: how often a run's new events are looked for
POLL = 0.25
_END = object()


def record(e: Any) -> dict[str, Any]:
    """An event record (the store's ``Event``, or any object with its fields) as JSON."""
    ts = getattr(e, "ts", None)
    if isinstance(ts, datetime):
        ts_text: str | None = ts.astimezone(UTC).isoformat()
    elif isinstance(ts, int | float):
        ts_text = datetime.fromtimestamp(ts, UTC).isoformat()
    else:
        ts_text = None if ts is None else str(ts)
    return {
        "run_id": e.run_id, "seq": int(e.seq), "ts": ts_text, "step": e.step, "event": str(e.event),
        "payload": e.payload,
    }  # fmt: skip


def message(e: dict[str, Any]) -> bytes:
    data = orjson.dumps(e, default=str)
    return b"id: " + str(e["seq"]).encode() + b"\ndata: " + data + b"\n\n"


async def stream(run: Any, after: int = 0, poll: float = POLL) -> AsyncIterator[bytes]:
    """The SSE body: the events of ``run`` (a ``Run``) after seq ``after``, to the run's end.

    ``run.events()`` is read every ``poll`` seconds on a thread of the stream's own, which
    ends within a poll of the client going away (a follow that blocks until the next event
    would keep reading the store for as long as a run waits at a gate).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def hand(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop closed: nobody listens any more
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        seen: set[int] = set()
        try:
            while not stop.is_set():
                over = run.done  # before reading: the events of a run that has ended are all there
                fresh = [e for e in run.events() if e.seq not in seen]
                for e in fresh:  # in seq order; a start held back until its end comes when committed
                    seen.add(e.seq)
                    hand(e)
                if over or any(e.event == "run_ended" for e in fresh):
                    break
                if not fresh:
                    stop.wait(poll)
        except Exception as exc:  # noqa: BLE001  (handed to the stream, which ends with it)
            if not stop.is_set():
                hand(exc)
        finally:
            hand(_END)

    thread = threading.Thread(target=pump, name="flownb-sse", daemon=True)
    thread.start()
    try:
        yield b"retry: 1000\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is _END or isinstance(item, BaseException):
                return
            e = record(item)
            if e["seq"] <= after:
                continue
            yield message(e)
            if e["event"] == "run_ended":
                return
    finally:
        stop.set()  # the reader thread ends within a poll
