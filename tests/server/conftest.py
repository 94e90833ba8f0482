"""A real uvicorn server on 127.0.0.1 and a free port, in this process or in another one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flownb.server import make_server
from tests.browser.lab import free_port
from tests.server.flowdefs import define

TOKEN = "test-token-0123456789"
ROOT = Path(__file__).parents[2]
FLOWDEFS = Path(__file__).parent / "flowdefs.py"


_CLIENTS: list[httpx.Client] = []


def client(url: str, token: str | None = TOKEN) -> httpx.Client:
    """An HTTP client of the server (closed after the test), with the token unless ``token=None``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    made = httpx.Client(base_url=url, headers=headers, timeout=30)
    _CLIENTS.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (a deadline, never a timed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def wait_for_status(api: httpx.Client, run_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = api.get(f"/api/runs/{run_id}")
        return r.json() if r.status_code == 200 and r.json()["status"] in statuses else None

    return wait_for(check, f"run {run_id} to be {statuses}", timeout)  # type: ignore[no-any-return]


@pytest.fixture
def serve(db: str) -> Iterator[Callable[..., Any]]:
    """Start servers of the named test flows on ``db`` (stopped after the test)."""
    servers = []

    def start(*names: str, **options: Any) -> Any:
        options.setdefault("token", TOKEN)
        options.setdefault("rate", 10_000)
        options.setdefault("burst", 10_000)
        flows = [define(n, db) for n in names]
        server = make_server(flows, db=db, port=0, announce=lambda _: None, **options).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


class ServerProcess:
    """``flownb serve`` in a process of its own (for two servers on one store, and restarts)."""

    def __init__(self, targets: list[str], db: str, scratch: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = scratch / f"serve-{self.port}-{time.monotonic_ns()}.log"
        env = {**os.environ, "FLOWNB_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flownb.cli", "serve", *targets, "--db", db, "--port", str(self.port)],
                cwd=scratch, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        api = client(self.url)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"flownb serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                return api.get("/api/flows").status_code == 200
            return False

        wait_for(up, f"flownb serve on port {self.port}", timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # uvicorn shuts down on SIGTERM; the store gives its leases back
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(targets: list[str], db: str, port: int | None = None) -> ServerProcess:
        p = ServerProcess(targets, db, tmp_path, port)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
