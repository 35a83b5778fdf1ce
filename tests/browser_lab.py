"""JupyterLab and Chromium for the browser tests, isolated from the learner's own set-up.

`running_lab` starts a server on a free port of 127.0.0.1 with a random token and settings of
its own: autosave and the news toast are switched off by an `overrides.json` in a private app
settings directory, and user settings and workspaces start empty. Nothing persists, so a
learner's settings can't change what the test sees. The page helpers below drive it: wait for
a kernel, Run All, read errors from the notebook model.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
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
    """SIGTERM to the server's process group (the server, or `run.py` and the server it
    started) lets it shut its kernels down; wait so the port and files are free."""
    if lab.process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(lab.process.pid, signal.SIGTERM)
        try:
            lab.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(lab.process.pid, signal.SIGKILL)
            lab.process.wait()


@contextmanager
def running_lab(root_dir: Path, state: Path, env: dict[str, str],
                timeout: float = 60) -> Iterator[Lab]:
    """A ready JupyterLab serving `root_dir`, with no kernel sessions before or after use."""
    port, token = free_port(), secrets.token_hex(16)
    with serving(lab_command(root_dir, state, port, token), root_dir, state, env, port, token,
                 timeout) as lab:
        yield lab


def course_arguments(state: Path, port: int, token: str) -> list[str]:
    """What the browser test adds to `run.py course`: its port and token, no browser, and
    user settings and Lab workspaces of its own (the venv's overrides.json stays in force)."""
    return ["--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--LabApp.user_settings_dir={state / 'user-settings'}",
            f"--LabApp.workspaces_dir={state / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True", "--LanguageServerManager.autodetect=False"]


@contextmanager
def serving(command: list[str], cwd: Path, state: Path, env: dict[str, str], port: int,
            token: str, timeout: float = 60) -> Iterator[Lab]:
    """Run `command` (a JupyterLab on `port` with `token`) until the block ends."""
    state.mkdir(parents=True, exist_ok=True)
    log = state / "lab.log"
    # A session of its own: a Ctrl-C meant for pytest would make the server ask "Shut down?".
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    lab = Lab(process, f"http://127.0.0.1:{port}", token, log)
    try:
        wait_until_ready(lab, timeout)
        lab.delete_sessions()
        yield lab
    finally:
        with suppress(OSError):
            lab.delete_sessions()
        stop(lab)


# The page: Debian's chromium, never a browser Playwright downloads.

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}

# Ready means a kernel is attached and idle: the toolbar indicator alone reads "idle" while the
# status bar still says "No Kernel | Initializing", and a Run All then silently does nothing.
KERNEL_IDLE = """() => {
  const bar = document.querySelector('span.jp-StatusBar-TextItem[title^="Change kernel"]');
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return Boolean(bar && !bar.textContent.includes('No Kernel')
    && /\\|\\s*Idle\\s*$/.test(bar.textContent) && indicator?.dataset.status === 'idle');
}"""
PROMPTS = "[...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
ALL_CLEARED = f"""() => {PROMPTS}.every(p => /^\\[\\s*\\]:$/.test(p.textContent.trim()))
  && !document.querySelector('.jp-Notebook .jp-OutputArea-output')"""
NUMBERED = f"() => {PROMPTS}.filter(p => /^\\[\\d+\\]:$/.test(p.textContent.trim())).length"
# Errors come from the notebook model: JupyterLab renders an error with the same mime type as
# stderr (application/vnd.jupyter.stderr), so in the DOM a traceback looks like a warning.
# Cells tagged raises-exception are meant to raise.
ERRORS = """() => window.jupyterapp.shell.currentWidget.content.model.toJSON().cells
  .filter(cell => !(cell.metadata?.tags ?? []).includes('raises-exception'))
  .flatMap(cell => cell.outputs ?? []).filter(output => output.output_type === 'error')
  .map(output => `${output.ename}: ${output.evalue}`)"""
# An error aborts the cells queued after it, so their prompts never get a number.
RUN_ENDED = f"""(expected) => ({KERNEL_IDLE})()
  && (({NUMBERED})() === expected || ({ERRORS})().length > 0)"""
# What the kernel drew: outputs without the controls' own state (a slider's readout, a
# dropdown's selection), so a change means the kernel answered; images by a slice of their data.
DRAWN = """() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')].map(o => {
  const copy = o.cloneNode(true);
  copy.querySelectorAll('.widget-readout, select, input, textarea').forEach(e => e.remove());
  const images = [...o.querySelectorAll('img')].map(
    i => i.src.length + i.src.slice(i.src.length / 2, i.src.length / 2 + 120));
  return copy.textContent + images.join('|');
}).join('\\n')"""


def require(present: bool, message: str) -> None:
    """Skip on a learner's machine; under CI=true nothing may be missing, so fail."""
    import pytest
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true, so this fails instead of skipping)", pytrace=False)
    pytest.skip(message)


def sync_api():
    """Playwright's sync API and chromium, or a skip/failure saying how to get them."""
    try:
        from playwright import sync_api
    except ImportError:
        require(False, "playwright is not installed: `python3 run.py test` installs it in .venv")
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: sudo apt-get install chromium")
    sync_api.expect.set_options(timeout=30_000)
    return sync_api


def launch_chromium(playwright, profile: Path, env: dict[str, str]):
    """Debian's chromium with a fresh profile, in the environment that keeps state out of $HOME."""
    return playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, env=env,
        viewport=VIEWPORT)


def code_cells_to_run(notebook: Path) -> int:
    """Code cells that get an `[n]:` prompt: JupyterLab doesn't execute blank ones."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(1 for cell in cells
               if cell["cell_type"] == "code" and "".join(cell["source"]).strip())


def open_notebook(page, lab: Lab, path: str) -> None:
    page.goto(lab.url(f"lab/tree/{path}?reset"))
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)


def click_menu(page, menu: str, item: str) -> None:
    page.locator(f'.lm-MenuBar-itemLabel:text-is("{menu}")').click()
    page.locator(f'.lm-Menu-itemLabel:text-is("{item}")').click()


def run_all_cells(page, expected_prompts: int) -> None:
    """Clear first, so that prompts and outputs left from before can't satisfy the waits."""
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    click_menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(ALL_CLEARED)
    click_menu(page, "Run", "Run All Cells")
    page.wait_for_function(RUN_ENDED, arg=expected_prompts, timeout=180_000, polling=250)
    errors = page.evaluate(ERRORS)
    assert not errors, "cells raised: " + "; ".join(errors)
    assert page.evaluate(NUMBERED) == expected_prompts, "not every code cell ran"


@contextmanager
def screenshot_on_failure(page, path: Path) -> Iterator[None]:
    """Keep what the browser showed when a step failed: the assertion alone rarely says why."""
    try:
        yield
    except Exception:
        page.screenshot(path=str(path))
        raise
