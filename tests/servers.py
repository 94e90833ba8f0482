"""Real local servers for tests and benchmarks, on 127.0.0.1 only.

- :class:`HttpServer`: a threaded HTTP/1.1 server with routes tests need
  (JSON, statuses, flaky endpoints, redirects, large bodies, echo, sleep).
- :class:`MessagesServer`: speaks enough of the Anthropic Messages API
  (``POST /v1/messages``, plain JSON and streaming SSE) for the real SDK; point
  the SDK at it with ``ANTHROPIC_BASE_URL=server.url``.
- ``python tests/servers.py fast``: an asyncio keep-alive server in its own
  process answering every request with a small JSON body (for benchmarks:
  it is not the bottleneck and does not share the client's GIL). It prints
  ``PORT <n>`` once it listens.

Both threaded servers record what they received in ``requests`` (a list of
:class:`Received`) so tests can assert on what was actually sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: _Base


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(rec)
        try:
            owner.handle(self, rec)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def reply(self, status: int, body: bytes = b"", content_type: str = "text/plain",
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self.reply(status, json.dumps(value).encode(), "application/json", headers)


class _Base:
    """A threaded server on 127.0.0.1 with an ephemeral port; a context manager."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Received] = []
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=type(self).__name__)  # fmt: skip

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _Base:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, h: _Handler, rec: Received) -> None:
        raise NotImplementedError


class HttpServer(_Base):
    """Routes:

    - ``/json`` -> ``{"hello": "world"}``; ``/text`` -> ``hello``; ``/notjson`` -> bad JSON labelled JSON
    - ``/status/<code>[?retry_after=S]`` -> that status
    - ``/flaky/<key>?fail=N[&status=503][&retry_after=S]`` -> N failures, then ``{"ok": true, "calls": k}``
    - ``/redirect?to=URL`` -> 302 to URL
    - ``/bytes/<n>`` -> n bytes of text; ``/stream/<n>`` the same without Content-Length
    - ``/echo`` -> the request as JSON (method, path, headers, body)
    - ``/sleep/<seconds>`` -> waits, then 200 (wakes early when the server stops)
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def handle(self, h: _Handler, rec: Received) -> None:
        parts = urlsplit(rec.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        seg = parts.path.strip("/").split("/")
        head = seg[0]
        if head == "json":
            h.reply_json(200, {"hello": "world"})
        elif head == "text":
            h.reply(200, b"hello")
        elif head == "notjson":
            h.reply(200, b"{not json", "application/json")
        elif head == "status":
            extra = {"Retry-After": q["retry_after"]} if "retry_after" in q else None
            h.reply(int(seg[1]), f"status {seg[1]}".encode(), headers=extra)
        elif head == "flaky":
            with self.lock:
                n = self.calls[seg[1]] = self.calls.get(seg[1], 0) + 1
            if n <= int(q.get("fail", "1")):
                extra = {"Retry-After": q["retry_after"]} if "retry_after" in q else None
                h.reply(int(q.get("status", "503")), b"try again", headers=extra)
            else:
                h.reply_json(200, {"ok": True, "calls": n})
        elif head == "redirect":
            h.reply(302, b"", headers={"Location": q["to"]})
        elif head == "bytes":
            h.reply(200, b"x" * int(seg[1]))
        elif head == "stream":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            left = int(seg[1])
            while left > 0:
                h.wfile.write(b"y" * min(left, 65536))
                left -= 65536
        elif head == "echo":
            h.reply_json(200, {"method": rec.method, "path": rec.path, "headers": rec.headers,
                               "body": rec.body.decode("utf-8", "replace")})  # fmt: skip
        elif head == "sleep":
            self.stopping.wait(float(seg[1]))
            h.reply_json(200, {"slept": float(seg[1])})
        else:
            h.reply(404, b"no such route")


@dataclass
class Reply:
    """One scripted answer of :class:`MessagesServer`.

    ``status`` other than 200 answers with an API error of ``error_type``;
    ``stream_error`` sends an ``error`` event in the middle of a stream;
    ``hang`` holds a stream open after its first text delta (until the client
    goes away or the server stops).
    """

    text: str = "Hello from the test server."
    status: int = 200
    error_type: str = "overloaded_error"
    headers: dict[str, str] = field(default_factory=dict)
    usage: tuple[int, int] | None = None
    stream_error: bool = False
    hang: bool = False


class MessagesServer(_Base):
    """``POST /v1/messages``: answers from ``script`` (a deque of :class:`Reply`) in
    order, then with ``Reply(text=f"You said: {prompt}")``."""

    CHUNK = 7  # characters per text delta: several deltas even for short replies

    def __init__(self) -> None:
        super().__init__()
        self.script: deque[Reply] = deque()

    def handle(self, h: _Handler, rec: Received) -> None:
        if rec.method != "POST" or urlsplit(rec.path).path.rstrip("/") != "/v1/messages":
            h.reply_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no route"}})
            return
        req = rec.json()
        prompt = _prompt_text(req)
        with self.lock:
            reply = self.script.popleft() if self.script else Reply(text=f"You said: {prompt}")
        if reply.status != 200:
            h.reply_json(reply.status, {"type": "error", "error": {"type": reply.error_type,
                         "message": f"scripted {reply.status}"}}, headers=reply.headers)  # fmt: skip
            return
        tokens_in, tokens_out = reply.usage or (max(1, len(prompt) // 4), max(1, len(reply.text) // 4))
        message = {
            "id": f"msg_test_{len(self.requests)}", "type": "message", "role": "assistant",
            "model": req.get("model"), "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": tokens_in, "output_tokens": 1},
        }  # fmt: skip
        if not req.get("stream"):
            message.update(content=[{"type": "text", "text": reply.text}], stop_reason="end_turn",
                           usage={"input_tokens": tokens_in, "output_tokens": tokens_out})  # fmt: skip
            h.reply_json(200, message, headers=reply.headers)
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True

        def event(name: str, data: dict[str, Any]) -> None:
            h.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            h.wfile.flush()

        event("message_start", {"type": "message_start", "message": message})
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})  # fmt: skip
        event("ping", {"type": "ping"})
        pieces = [reply.text[i : i + self.CHUNK] for i in range(0, len(reply.text), self.CHUNK)] or [""]
        for n, piece in enumerate(pieces):
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": piece}})  # fmt: skip
            if n == 0 and reply.hang:
                while not self.stopping.wait(0.05):
                    h.wfile.write(b": keep-alive\n\n")  # raises once the client is gone
                    h.wfile.flush()
                return
            if n == 0 and reply.stream_error:
                event("error", {"type": "error", "error": {"type": reply.error_type, "message": "scripted"}})
                return
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": tokens_out}})  # fmt: skip
        event("message_stop", {"type": "message_stop"})


def _prompt_text(req: dict[str, Any]) -> str:
    messages = req.get("messages") or [{}]
    content = messages[-1].get("content", "")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


# -- the fast benchmark server (its own process) ---------------------------------

_FAST_BODY = b'{"ok":true}'
_FAST_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_FAST_BODY)).encode() + b"\r\n\r\n" + _FAST_BODY
)  # fmt: skip


async def _fast_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            writer.write(_FAST_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve_fast(port: int = 0) -> None:
    server = await asyncio.start_server(_fast_conn, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["fast"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_fast(int(sys.argv[2]) if len(sys.argv) > 2 else 0))
    else:
        with HttpServer() as s, MessagesServer() as m:
            print(f"http {s.url}  messages {m.url}", flush=True)
            while True:
                time.sleep(3600)
