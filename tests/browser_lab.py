"""JupyterLab as a subprocess for the browser test, isolated from the learner's own set-up.

The server gets a free port on 127.0.0.1, a random token, and settings of its own: autosave
and the news toast are switched off by an `overrides.json` in a private app settings directory,
and user settings and workspaces start empty. Nothing persists, so `python3 run.py course` keeps
its defaults (autosave on) and a learner's settings can't change what the test sees.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
}


@dataclass
class Lab:
    """A running server: where it listens, its token, and its log."""

    process: subprocess.Popen
    base_url: str
    token: str
    log: Path

    def url(self, path: str) -> str:
        """A browser URL for `path` (such as `lab/tree/x.ipynb?reset`) that logs in."""
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}/{path}{separator}token={self.token}"

    def api(self, method: str, path: str) -> Any:
        """Call the REST API; the JSON answer, or None for an empty one."""
        request = urllib.request.Request(f"{self.base_url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def delete_sessions(self) -> None:
        """Shut down every kernel session: sessions outlive the browser that opened them."""
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_command(root_dir: Path, state: Path, port: int, token: str) -> list[str]:
    """`jupyter lab` with no browser, no update checks, and its settings and files in `state`."""
    settings = state / "app-settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES))
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root_dir}",
               f"--LabApp.app_settings_dir={settings}",
               f"--LabApp.user_settings_dir={state / 'user-settings'}",
               f"--LabApp.workspaces_dir={state / 'workspaces'}",
               "--LabApp.extension_manager=readonly", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               # window.jupyterapp: the test reads cell outputs from the notebook model.
               "--LabApp.expose_app_in_browser=True",
               # Opening a notebook writes a checkpoint next to it; keep it out of the repo.
               f"--FileCheckpoints.checkpoint_dir={state / 'checkpoints'}",
               # Language-server discovery runs `npm prefix -g`, which logs to ~/.npm.
               "--LanguageServerManager.autodetect=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


def wait_until_ready(lab: Lab, timeout: float) -> None:
    """Poll /api/status: the port opens before the server can serve a notebook."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early:\n{lab.log_tail()}")
        try:
            lab.api("GET", "status")
            return
        except OSError:  # refused, reset or timed out while the server starts
            time.sleep(0.2)
    raise RuntimeError(f"JupyterLab not ready after {timeout:.0f} s:\n{lab.log_tail()}")


def stop(lab: Lab) -> None:
    """SIGTERM lets the server shut its kernels down; wait so the port and files are free."""
    if lab.process.poll() is None:
        lab.process.terminate()
        try:
            lab.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.process.kill()
            lab.process.wait()


@contextmanager
def running_lab(root_dir: Path, state: Path, env: dict[str, str],
                timeout: float = 60) -> Iterator[Lab]:
    """A ready JupyterLab serving `root_dir`, with no kernel sessions before or after use."""
    port, token = free_port(), secrets.token_hex(16)
    log = state / "lab.log"
    # A session of its own: a Ctrl-C meant for pytest would make the server ask "Shut down?".
    with log.open("wb") as output:
        process = subprocess.Popen(lab_command(root_dir, state, port, token), env=env,
                                   cwd=root_dir, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(process, f"http://127.0.0.1:{port}", token, log)
    try:
        wait_until_ready(lab, timeout)
        lab.delete_sessions()
        yield lab
    finally:
        with suppress(OSError):
            lab.delete_sessions()
        stop(lab)
