"""Real kernels for the notebook tests: start one, run cells, send widget clicks."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

TIMEOUT = 90


class Kernel:
    """A real ipykernel with the helpers the tests need."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)
        #: every iopub stream text seen, of any cell (to prove step output never lands there)
        self.streams: list[str] = []

    def execute(
        self, code: str, *, allow_error: bool = False, timeout: float = TIMEOUT, on_stream: Any = None,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        """Run a cell (as the notebook cell ``cell_id``, as JupyterLab says); return its stream text,
        results and error."""
        if cell_id is None:
            msg_id = self.kc.execute(code)
        else:
            content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                       "allow_stdin": False, "stop_on_error": True}  # fmt: skip
            msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        out: dict[str, Any] = {"stdout": "", "stderr": "", "data": [], "error": None}
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                self.streams.append(content["text"])
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind == "stream":
                out[content["name"]] += content["text"]
                if on_stream is not None:
                    on_stream(content["text"])
            elif kind in ("execute_result", "display_data"):
                out["data"].append(content["data"])
            elif kind == "error":
                out["error"] = f"{content['ename']}: {content['evalue']}"
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        if reply["content"]["status"] == "error" and not out["error"]:
            # a UsageError is printed on stderr, not sent as an error message; the reply says it failed
            out["error"] = out["stderr"].strip() or reply["content"].get("ename", "error")
        if out["error"] and not allow_error:
            raise AssertionError(f"cell failed: {out['error']}\n{code}")
        return out

    def value(self, expr: str) -> Any:
        """The JSON value of an expression evaluated in the kernel."""
        res = self.execute(f"import json as _j; print('@@' + _j.dumps({expr}, default=str))")
        line = next(ln for ln in res["stdout"].splitlines() if ln.startswith("@@"))
        return json.loads(line[2:])

    def wait_for(self, expr: str, timeout: float = TIMEOUT) -> Any:
        """Poll a kernel expression until it is truthy (no timed assertions: a generous deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.value(expr)
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} stayed {got!r} for {timeout}s")
            time.sleep(0.2)

    def comm_msg(self, comm_id: str, data: dict[str, Any]) -> None:
        """What a frontend sends when a widget is used (an update, a click)."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)

    def click(self, model_id: str) -> None:
        self.comm_msg(model_id, {"method": "custom", "content": {"event": "click"}})

    def set_state(self, model_id: str, state: dict[str, Any]) -> None:
        self.comm_msg(model_id, {"method": "update", "state": state, "buffer_paths": []})

    def kill(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir(exist_ok=True)  # flownb makes no directory but .flownb/ for a store
    return tmp_path / "store" / f"flownb-{uuid.uuid4().hex[:6]}.duckdb"


@pytest.fixture
def kernel_env(store_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FLOWNB_DB"] = str(store_path)
    env.pop("JPY_SESSION_NAME", None)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


@pytest.fixture
def start_kernel(kernel_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    started: list[Kernel] = []

    def start() -> Kernel:
        k = Kernel(kernel_env, tmp_path)
        started.append(k)
        k.execute("%load_ext flownb")
        return k

    yield start
    for k in started:
        with contextlib.suppress(Exception):  # already gone: killed by the test
            k.kill()


@pytest.fixture
def kernel(start_kernel: Any) -> Kernel:
    return start_kernel()  # type: ignore[no-any-return]
