"""A real JupyterLab and a real Chromium for the browser tests, on 127.0.0.1 only.

- :func:`ensure_chromium`: Debian's ``/usr/bin/chromium``, installed with apt when
  missing (CI machines start without it; ``playwright install`` cannot download here).
- :class:`JupyterLab`: ``python -m jupyterlab`` from the test's own interpreter (so the
  kernel and the widget manager come from the same environment), with throwaway HOME,
  config, data and runtime directories and a token; extra environment goes to the
  server and so to the kernels it starts (``FLOWNB_DB``).
- :func:`chromium_page`: a headless Chromium context on an empty profile, driven by
  Playwright's sync API.
- :class:`LabNotebook`: what a user does in a notebook tab (wait for the kernel, Run >
  Run All Cells, switch the theme, save a screenshot) in terms of JupyterLab's DOM.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # we are root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no internet here: no update checks, no safe browsing
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
]
STARTUP_TIMEOUT = 90  # a loaded 2-core machine: JupyterLab's first start builds its caches


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt when missing; raise with a clear message if impossible."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{CHROMIUM} is missing and there is no apt-get to install it: install Chromium by hand")
    if os.geteuid() != 0:
        raise RuntimeError(f"{CHROMIUM} is missing; as root run: apt-get update && apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update"], [apt, "install", "-y", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"installing Chromium failed: {' '.join(cmd)} exited {done.returncode}\n{done.stderr[-2000:]}"
            )
    if not CHROMIUM.exists():
        raise RuntimeError(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterLab:
    """A JupyterLab server serving ``root``; ``url(path)`` gives an address with the token."""

    def __init__(self, root: Path, scratch: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.home = scratch / "lab-home"
        self.log_path = scratch / "jupyterlab.log"
        config, data, runtime = scratch / "jupyter-config", scratch / "jupyter-data", scratch / "jupyter-runtime"
        for d in (self.home, config, data, runtime):
            d.mkdir(parents=True, exist_ok=True)
        # no "receive Jupyter news?" toast and no update check: nothing to click away, no internet
        (config / "labconfig").mkdir(exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(data),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "IPYTHONDIR": str(self.home / ".ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",  # silences jupyter_core's migration warning
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "lab") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--allow-root",  # root in CI containers
            "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]  # fmt: skip
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as r:  # 127.0.0.1 only
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {STARTUP_TIMEOUT}s:\n{self.log_tail()}")
            time.sleep(0.3)

    def _api(self, method: str, path: str) -> Any:
        req = urllib.request.Request(  # 127.0.0.1 only
            f"http://127.0.0.1:{self.port}/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut every kernel down and wait for it: a kernel holds the store's lock until it exits."""
        for kernel in self._api("GET", "api/kernels"):
            self._api("DELETE", f"api/kernels/{kernel['id']}")

    def stop(self) -> None:
        """Shut the kernels, then the server down; kill the server if it does not go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(urllib.error.URLError, OSError):  # the SIGINTs below shut kernels down too
                self.shutdown_kernels()
            # SIGINT twice is jupyter_server's "shut down without asking": kernels are shut down too
            self.proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> JupyterLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def chromium_page(executable: Path, scratch: Path) -> Iterator[Any]:
    """A page of a headless Chromium on an empty profile, with its own HOME."""
    from playwright.sync_api import sync_playwright

    profile, home = scratch / "chromium-profile", scratch / "chromium-home"
    profile.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(executable),
            headless=True,
            args=CHROMIUM_FLAGS,
            env={**os.environ, "HOME": str(home)},
            viewport={"width": 1280, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


class LabNotebook:
    """A notebook open in JupyterLab, driven like a user would."""

    def __init__(self, page: Any, lab: JupyterLab, name: str) -> None:
        self.page = page
        self.lab = lab
        self.name = name

    def open(self, timeout: float = STARTUP_TIMEOUT) -> None:
        self.page.goto(self.lab.url(f"lab/tree/{self.name}"), timeout=timeout * 1000)
        self.page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=timeout * 1000)
        # the toolbar says idle before a kernel exists; the status bar names the kernel once it is up
        self.page.get_by_text("(ipykernel) | Idle").first.wait_for(timeout=timeout * 1000)

    def run_all(self) -> None:
        """Run > Run All Cells, from the menu bar."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator('li.lm-Menu-item[data-command="runmenu:run-all"]').click()

    def set_theme(self, name: str) -> None:
        """Settings > Theme > ``name`` ("JupyterLab Dark", "JupyterLab Light"), then wait until it applies."""
        import re

        self.page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
        self.page.locator("li.lm-Menu-item", has=self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(
            r"^Theme$"))).first.hover()  # fmt: skip
        label = self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(name)}$"))
        self.page.locator('li.lm-Menu-item[data-command="apputils:change-theme"]', has=label).first.click()
        self.page.locator(f'body[data-jp-theme-name="{name}"]').wait_for(state="attached")  # body counts as hidden

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=False)
        return path
