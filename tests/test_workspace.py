"""The learner's workspace: created once, answers never overwritten, lessons kept up to date,
and nothing the project's commands do ever writes into it."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import run
from refimpl.grading.generate import generate_all
from tests.test_course_links import BEING_WRITTEN

ROOT = Path(__file__).resolve().parents[1]


def notebook(path: Path, *sources: str, outputs: str = "") -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, id=f"c{i}") for i, source in enumerate(sources)]
    if outputs:
        nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=outputs)]
        nb.cells[0].execution_count = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    notebook(root / "course" / "00-lesson.ipynb", "print('lesson, first version')")
    notebook(root / "exercises" / "00-lesson.ipynb", "def f():\n    raise NotImplementedError()")
    return root


def sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, 4).cells]


def test_the_first_start_copies_lessons_and_exercises_side_by_side(course: Path):
    notes = run.sync_workspace(course)
    assert notes == ["added course/00-lesson.ipynb", "added exercises/00-lesson.ipynb"]
    workspace = course / "workspace"
    for folder in ("course", "exercises"):
        assert (workspace / folder / "00-lesson.ipynb").read_bytes() == \
            (course / folder / "00-lesson.ipynb").read_bytes()
    assert run.sync_workspace(course) == [], "a second start changes nothing"


def test_answers_survive_a_new_course_version_and_new_exercises_appear(course: Path):
    run.sync_workspace(course)
    answer = course / "workspace" / "exercises" / "00-lesson.ipynb"
    notebook(answer, "def f():\n    return 42", outputs="ran\n")
    # git pull: the exercise notebook changed and a new one arrived
    notebook(course / "exercises" / "00-lesson.ipynb", "def f():\n    raise NotImplementedError()",
             "# a new hint")
    notebook(course / "exercises" / "01-next.ipynb", "def g():\n    raise NotImplementedError()")
    notes = run.sync_workspace(course)
    assert sources(answer) == ["def f():\n    return 42"]
    assert (course / "workspace" / "exercises" / "01-next.ipynb").exists()
    assert "added exercises/01-next.ipynb" in notes
    assert any(note.startswith("kept your exercises/00-lesson.ipynb") for note in notes)
    assert run.sync_workspace(course) == [], "the note is given once"


def test_a_lesson_is_refreshed_when_only_run_and_kept_when_edited(course: Path):
    run.sync_workspace(course)
    lesson = course / "workspace" / "course" / "00-lesson.ipynb"
    notebook(lesson, "print('lesson, first version')", outputs="lesson, first version\n")
    notebook(course / "course" / "00-lesson.ipynb", "print('lesson, second version')")
    assert run.sync_workspace(course) == ["updated course/00-lesson.ipynb to the course's new "
                                          "version"]
    assert sources(lesson) == ["print('lesson, second version')"]

    notebook(lesson, "print('my own experiment')")
    notebook(course / "course" / "00-lesson.ipynb", "print('lesson, third version')")
    notes = run.sync_workspace(course)
    assert sources(lesson) == ["print('my own experiment')"]
    assert notes[0].startswith("kept your edited course/00-lesson.ipynb")
    lesson.unlink()
    assert run.sync_workspace(course) == ["added course/00-lesson.ipynb"]
    assert sources(lesson) == ["print('lesson, third version')"]


def test_the_lessons_links_to_exercises_resolve_inside_the_workspace():
    """`../exercises/NN-x.ipynb` from a lesson: the workspace mirrors course/ and exercises/."""
    for path in sorted((ROOT / "course").glob("*.ipynb")):
        text = path.read_text()
        for target in {part.split(")")[0] for part in text.split("](../exercises/")[1:]}:
            if f"../exercises/{target}" in BEING_WRITTEN:
                continue
            assert (ROOT / "exercises" / target).exists(), f"{path.name} links to {target}"


def test_the_generator_never_writes_into_the_workspace(tmp_path: Path):
    with pytest.raises(ValueError, match="learner's workspace"):
        generate_all(ROOT / "solutions", ROOT / "workspace" / "exercises")
    process = subprocess.run([sys.executable, "-m", "refimpl.grading", "generate",
                              "--exercises", str(ROOT / "workspace" / "exercises")],
                             capture_output=True, text=True)
    assert process.returncode == 2 and "never writes to" in process.stderr


def test_lab_settings_turn_off_the_news_and_keep_autosave():
    notification = run.LAB_SETTINGS["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    assert run.LAB_SETTINGS["@jupyterlab/docmanager-extension:plugin"]["autosave"] is True
    json.dumps(run.LAB_SETTINGS)


def test_the_workspace_is_ignored_by_git_and_pytest():
    ignored = subprocess.run(["git", "check-ignore", "-q", "workspace/course/x.ipynb"],
                             cwd=ROOT)
    assert ignored.returncode == 0
    norecurse = next(line for line in (ROOT / "pyproject.toml").read_text().splitlines()
                     if line.startswith("norecursedirs"))
    assert '"workspace"' in norecurse
