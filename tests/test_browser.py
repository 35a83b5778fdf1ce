"""Lesson 03 in a real JupyterLab and a real Chromium: run every cell, move the call-chain stepper.

nbval runs the cells, but only a browser shows that the widgets render and that moving one
reaches the kernel and comes back. It drives Debian's chromium, never a browser Playwright
downloads; `python3 run.py test` installs chromium when it can (as root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from run import tool_environment
from tests.browser_lab import running_lab

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "course" / "03-page-tables-and-refcounts.ipynb"
# The switch: BROWSER_NOTEBOOK=path/to/other.ipynb points the test at another notebook.
NOTEBOOK = Path(os.environ.get("BROWSER_NOTEBOOK", LESSON)).resolve()
SCREENSHOT = ROOT / "artifacts" / "browser" / "lesson03.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI") == "true"

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
ERRORS = """() => window.jupyterapp.shell.currentWidget.content.model.toJSON().cells
  .flatMap(cell => cell.outputs ?? []).filter(output => output.output_type === 'error')
  .map(output => `${output.ename}: ${output.evalue}`)"""
# An error aborts the cells queued after it, so their prompts never get a number.
RUN_ENDED = f"""(expected) => ({KERNEL_IDLE})()
  && (({NUMBERED})() === expected || ({ERRORS})().length > 0)"""
ENCLOSING_VBOX = "xpath=ancestor::div[contains(concat(' ', @class, ' '), ' widget-vbox ')][1]"


def require(present: bool, message: str) -> None:
    """Skip on a learner's machine; under CI=true nothing may be missing, so fail."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{message} (CI=true, so this fails instead of skipping)", pytrace=False)
    pytest.skip(message)


def sync_api():
    """Playwright's sync API, or a skip/failure saying how to get it."""
    try:
        from playwright import sync_api
    except ImportError:
        require(False, "playwright is not installed: `python3 run.py test` installs it in .venv")
    return sync_api


def code_cells_to_run(notebook: Path) -> int:
    """Code cells that get an `[n]:` prompt: JupyterLab doesn't execute blank ones."""
    cells = nbformat.read(notebook, as_version=4).cells
    return sum(1 for cell in cells if cell.cell_type == "code" and cell.source.strip())


def click_menu(page, menu: str, item: str) -> None:
    page.locator(f'.lm-MenuBar-itemLabel:text-is("{menu}")').click()
    page.locator(f'.lm-Menu-itemLabel:text-is("{item}")').click()


def run_all_cells(page, expected_prompts: int) -> None:
    """Clear first, so that prompts and outputs left from before can't satisfy the waits."""
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    click_menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(ALL_CLEARED)
    click_menu(page, "Run", "Run All Cells")
    page.wait_for_function(RUN_ENDED, arg=expected_prompts, timeout=90_000, polling=250)
    errors = page.evaluate(ERRORS)
    assert not errors, "cells raised: " + "; ".join(errors)
    assert page.evaluate(NUMBERED) == expected_prompts, "not every code cell ran"


def step_the_stepper(page, expect) -> None:
    """Move the first slider with the keyboard; the HTML in its box must follow."""
    slider = page.locator(".jp-Notebook .widget-slider").first
    expect(slider).to_be_visible()
    box = slider.locator(ENCLOSING_VBOX)
    output = box.locator(".widget-html-content").first
    readout = slider.locator(".widget-readout")
    before, readout_before = output.text_content(), readout.text_content()
    slider.locator(".noUi-handle").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(readout).not_to_have_text(readout_before)
    expect(output).not_to_have_text(before)
    slider.scroll_into_view_if_needed()


@contextmanager
def screenshot_on_failure(page, path: Path) -> Iterator[None]:
    """Keep what the browser showed when a step failed: the assertion alone rarely says why."""
    try:
        yield
    except Exception:
        page.screenshot(path=str(path))
        raise


def launch_chromium(playwright, profile: Path, env: dict[str, str]):
    """Debian's chromium with a fresh profile, in the environment that keeps state out of $HOME."""
    return playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, env=env,
        viewport={"width": 1400, "height": 1000})


@pytest.mark.browser
def test_lesson_03_runs_and_its_stepper_answers(tmp_path: Path) -> None:
    if NOTEBOOK == LESSON:
        require(LESSON.exists(), f"{LESSON.relative_to(ROOT)} does not exist yet")
    api = sync_api()
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: sudo apt-get install chromium")
    api.expect.set_options(timeout=30_000)
    original = NOTEBOOK.read_bytes()
    root = ROOT if NOTEBOOK.is_relative_to(ROOT) else NOTEBOOK.parent
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    env = tool_environment()
    with running_lab(root, tmp_path, env) as lab, api.sync_playwright() as playwright:
        browser = launch_chromium(playwright, tmp_path / "chromium-profile", env)
        page = browser.pages[0]
        page.set_default_timeout(30_000)
        with screenshot_on_failure(page, SCREENSHOT):
            page.goto(lab.url(f"lab/tree/{NOTEBOOK.relative_to(root).as_posix()}?reset"))
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            run_all_cells(page, code_cells_to_run(NOTEBOOK))
            step_the_stepper(page, api.expect)
        page.screenshot(path=str(SCREENSHOT))
        browser.close()
    assert NOTEBOOK.read_bytes() == original, "the browser session rewrote the notebook on disk"
