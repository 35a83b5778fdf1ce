"""The course in a real JupyterLab and a real Chromium (Debian's), as a learner meets it.

- Every lesson (`course/*.ipynb`, so new lessons are covered as they arrive): Run All with no
  error, move its first slider, dropdown or toggle buttons and see the kernel redraw something,
  and keep a 1280x900 screenshot in `artifacts/screenshots/<lesson>.png`.
- The learner's flow: `python3 run.py course` on a fresh clone, a lesson, an exercise in the
  workspace answered wrongly then rightly, the rendered feedback and score; the clone's
  `git status` stays clean and its exercises/ still match solutions/.

nbval runs the cells too, but only a browser shows that widgets render and that moving one
reaches the kernel and comes back. One lesson: `pytest tests/test_browser.py -k 03`.
Under CI=true a missing chromium or playwright fails; elsewhere it skips.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from run import tool_environment
from tests.browser_lab import (DRAWN, KERNEL_IDLE, code_cells_to_run, course_arguments,
                               free_port, launch_chromium, open_notebook, run_all_cells,
                               running_lab, screenshot_on_failure, serving, sync_api)

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "course").glob("*.ipynb"))
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CONTROLS = ", ".join(f".jp-Notebook {kind}:visible" for kind in
                     (".widget-slider", ".widget-dropdown", ".widget-toggle-buttons"))

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def playwright():
    """Playwright's driver, once per module: a second one in the same thread is refused."""
    with sync_api().sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright, tmp_path_factory):
    """One JupyterLab over the repository and one Chromium for every lesson."""
    state = tmp_path_factory.mktemp("lab")
    env = tool_environment()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with running_lab(ROOT, state, env) as lab:
        context = launch_chromium(playwright, state / "chromium-profile", env)
        yield lab, context, sync_api().expect
        context.close()


def move_first_control(page, expect) -> bool:
    """Move the first visible slider (three steps right), dropdown (the next option) or
    toggle buttons (another button); whether there was one. Something the kernel draws must
    change."""
    controls = page.locator(CONTROLS)
    if controls.count() == 0:
        return False
    control = controls.first
    control.scroll_into_view_if_needed()
    before = page.evaluate(DRAWN)
    if "widget-slider" in (control.get_attribute("class") or ""):
        readout = control.locator(".widget-readout")
        was = readout.text_content()
        control.locator(".noUi-handle").focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        expect(readout).not_to_have_text(was)
    elif "widget-toggle-buttons" in (control.get_attribute("class") or ""):
        control.locator("button.widget-toggle-button:not(.mod-active)").first.click()
    else:
        select = control.locator("select")
        options = select.locator("option").count()
        assert options > 1, "a dropdown with one option cannot be moved"
        current = select.evaluate("s => s.selectedIndex")
        select.select_option(index=(current + 1) % options)
    page.wait_for_function(f"(before) => ({DRAWN})() !== before", arg=before, timeout=30_000)
    wait_until_settled(page)
    control.scroll_into_view_if_needed()
    return True


def wait_until_settled(page, timeout: float = 30) -> None:
    """Until the kernel is idle and the outputs stay the same for 0.7 s: each key press is a
    redraw of its own, and the kernel goes idle between them, so the screenshot must wait for
    the last one to be drawn."""
    drawn, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.wait_for_function(KERNEL_IDLE, timeout=60_000)
        now = page.evaluate(DRAWN)
        if now == drawn:
            return
        drawn = now
        page.wait_for_timeout(700)
    raise AssertionError(f"the outputs were still changing after {timeout} s")


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_a_lesson_runs_and_its_first_control_answers(browser, lesson: Path) -> None:
    lab, context, expect = browser
    original = lesson.read_bytes()
    screenshot = SCREENSHOTS / f"{lesson.stem}.png"
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        with screenshot_on_failure(page, screenshot):
            open_notebook(page, lab, f"course/{lesson.name}")
            run_all_cells(page, code_cells_to_run(lesson))
            moved = move_first_control(page, expect)
            if not moved:  # the lesson's beginning, then
                page.locator(".jp-Notebook .jp-Cell").first.evaluate("e => e.scrollIntoView()")
        page.screenshot(path=str(screenshot))
    finally:
        page.close()
        lab.delete_sessions()
    assert lesson.read_bytes() == original, "the browser session rewrote the lesson on disk"


# The learner's flow.

WRONG = ("def page_fault_error_code(present, write, user, fetch):", "return 0")
RIGHT = ("def page_fault_error_code(present, write, user, fetch):",
         "return present | write << 1 | user << 2 | fetch << 4")


def fresh_clone(tmp_path: Path) -> Path:
    """The committed course in a clone, sharing this checkout's .venv (a symlink, which git
    ignores) so that `run.py course` starts without installing anything."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    stamp = ROOT / ".venv" / ".installed"
    wanted = (clone / "pyproject.toml").read_bytes()
    if not stamp.exists() or stamp.read_text() != hashlib.sha256(wanted).hexdigest():
        pytest.fail(".venv was not installed from the committed pyproject.toml: commit it and "
                    "run `python3 run.py test` again", pytrace=False)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    return clone


def type_answer(page, cell, lines: tuple[str, ...]) -> None:
    """Replace a cell's code by typing, as a learner does (the editor indents the body)."""
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.type(lines[0])
    for line in lines[1:]:
        page.keyboard.press("Enter")
        page.keyboard.type(line)


def run_with_its_check(page, answer) -> None:
    """Run the answer cell, then its check cell: Shift+Enter twice, as a learner does."""
    answer.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")


def feedback_of(check):
    return check.locator(".refimpl-feedback")


def test_a_learner_answers_an_exercise_in_the_workspace_and_the_clone_stays_clean(
        playwright, tmp_path: Path) -> None:
    expect = sync_api().expect
    clone = fresh_clone(tmp_path)
    state, port = tmp_path / "lab", free_port()
    token = "learner-flow-" + tmp_path.name[-8:]
    command = [sys.executable, str(clone / "run.py"), "course",
               *course_arguments(state, port, token)]
    env = tool_environment()
    shots = SCREENSHOTS
    shots.mkdir(parents=True, exist_ok=True)
    workspace = clone / "workspace"
    with serving(command, clone, state, env, port, token, timeout=120) as lab:
        context = launch_chromium(playwright, state / "chromium-profile", env)
        page = context.pages[0]
        page.set_default_timeout(30_000)
        with screenshot_on_failure(page, shots / "learner-flow-failure.png"):
            # the course index and a lesson open from the workspace
            assert (workspace / "course" / "index.ipynb").exists()
            open_notebook(page, lab, "course/00-the-machine.ipynb")
            expect(page.locator(".jp-Notebook .jp-MarkdownCell").first).to_contain_text("00")

            # the lesson's link to its exercises opens the workspace copy (when it has one)
            exercise = "exercises/00-the-machine.ipynb"
            link = page.locator(f'.jp-RenderedMarkdown a[href$="{exercise}"]')
            if link.count():
                link.first.click()
                page.wait_for_function(f"() => window.jupyterapp.shell.currentWidget?.context"
                                       f"?.path === '{exercise}'")
            # the exercise: Run All on the untouched notebook reaches the summary
            open_notebook(page, lab, exercise)
            run_all_cells(page, code_cells_to_run(workspace / exercise))
            cells = page.locator(".jp-Notebook .jp-Cell")
            answer = cells.filter(has_text="def page_fault_error_code")
            check = cells.filter(has_text='grade("00-error-code")')
            summary = cells.filter(has_text="summary('00')")
            expect(feedback_of(check)).to_have_attribute("data-status", "not attempted")
            expect(summary.locator(".refimpl-summary")).to_contain_text("Score: 0 of 8 points")

            type_answer(page, answer, WRONG)
            run_with_its_check(page, answer)
            expect(feedback_of(check)).to_have_attribute("data-status", "wrong")
            expect(feedback_of(check)).to_contain_text("first difference")
            expect(feedback_of(check)).to_contain_text("the error code is 0b00001, you gave "
                                                       "0b00000")
            feedback_of(check).scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "learner-flow-wrong.png"))

            type_answer(page, answer, RIGHT)
            run_with_its_check(page, answer)
            expect(feedback_of(check)).to_have_attribute("data-status", "passed")
            expect(feedback_of(check)).to_contain_text("16 combinations")
            summary.locator(".cm-content").click()
            page.keyboard.press("Control+Enter")
            expect(summary.locator(".refimpl-summary")).to_contain_text("Score: 1 of 8 points")
            summary.locator(".refimpl-summary").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "learner-flow-right.png"))
            # the first start asks nothing (run.py's overrides.json): no news prompt
            expect(page.get_by_text("Jupyter news")).to_have_count(0)
            page.keyboard.press("Control+s")
            expect(page.locator(".jp-mod-dirty")).to_have_count(0)
        context.close()

    saved = (workspace / exercise).read_text()
    assert re.search(r"return present \| write << 1 \| user << 2 \| fetch << 4", saved)
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=clone,
                            check=True, capture_output=True, text=True).stdout
    assert status == "", f"the learner's session changed the clone:\n{status}"
    checked = subprocess.run([sys.executable, "-m", "refimpl.grading", "check-exercises",
                              "--solutions", str(clone / "solutions"), "--exercises",
                              str(clone / "exercises")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
