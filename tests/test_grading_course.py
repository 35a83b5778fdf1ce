"""The autograder on the real course: solutions, untouched exercises, realistic mistakes, and
the exercise notebooks as students receive them."""

import csv
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from refimpl.grading import EXERCISES
from refimpl.grading import sandbox
from refimpl.grading.grader import grade_class

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, EXERCISES_DIR = ROOT / "solutions", ROOT / "exercises"
TOTAL = sum(exercise.points for exercise in EXERCISES.values())

# A realistic mistake per student: (exercise, text in the solution, replacement, feedback).
MISTAKES = {
    "off-by-one-index": ("00-split-address", "shift -= bits", "shift -= bits - 1",
                         "index (level"),
    "missing-unref": ("03-release-pte", "mm.get_physical_page_entry(pde.page_table_base()).unref()",
                      "pass", "is live but no PDE points at it"),
    "forgotten-invlpg": ("04-unmap-everywhere", "region.destroy()",
                         "region.unmap(should_flush_tlb=False); region.destroy()",
                         "through a stale TLB entry"),
    "dangling-cache": ("05-take-region", "        space.region_lookup_cache.region = 0\n",
                       "        pass\n", "a region you took out of the tree"),
    "must-not-try": ("02-try", "region = TRY(space.allocate_region",
                     "region = MUST(space.allocate_region", "MUST failed"),
    "split-at-the-wrong-offset": ("09-munmap", "offset = source.offset_in_vmobject + (piece.base"
                                  " - source.range.base)", "offset = source.offset_in_vmobject",
                                  "in the reference, 'zero r' in yours"),
}


def copy_with_mistake(student: Path, grade_id: str, old: str, new: str) -> None:
    student.mkdir(parents=True)
    for path in SOLUTIONS.glob("*.ipynb"):
        notebook = nbformat.read(path, 4)
        for cell in notebook.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                assert old in cell.source
                cell.source = cell.source.replace(old, new)
        nbformat.write(notebook, student / path.name)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One class: the solutions, the untouched exercises, and a student per mistake."""
    root = tmp_path_factory.mktemp("grading")
    submissions, out = root / "class", root / "results"
    shutil.copytree(SOLUTIONS, submissions / "perfect")
    shutil.copytree(EXERCISES_DIR, submissions / "untouched")
    for student, (grade_id, old, new, _) in MISTAKES.items():
        copy_with_mistake(submissions / student, grade_id, old, new)
    isolation = [] if sandbox.unavailable() is None else ["--no-isolation"]
    process = subprocess.run([sys.executable, "-m", "refimpl.grading", "grade", str(submissions),
                              "--out", str(out), "--jobs", "2", *isolation], capture_output=True,
                             text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-2000:]
    with open(out / "grades.csv", newline="") as rows:
        grades = {row["student"]: row for row in csv.DictReader(rows)}
    return grades, out


def test_solutions_get_full_marks_and_untouched_exercises_zero(graded):
    grades, out = graded
    assert grades["perfect"]["total"] == grades["perfect"]["max"] == str(TOTAL)
    assert grades["untouched"]["total"] == "0"
    untouched = json.loads((out / "untouched" / "results.json").read_text())
    assert untouched["score"] == 0
    assert {test["output"].split(":")[0] for test in untouched["tests"]} == {"not attempted"}


@pytest.mark.parametrize("student", sorted(MISTAKES))
def test_a_realistic_mistake_loses_exactly_its_exercise(graded, student):
    grades, out = graded
    grade_id, _, _, feedback = MISTAKES[student]
    results = json.loads((out / student / "results.json").read_text())
    lost = [test for test in results["tests"] if test["score"] < test["max_score"]]
    assert [test["name"].split(":")[0] for test in lost] == [grade_id]
    assert lost[0]["output"].startswith("wrong: ") and feedback in lost[0]["output"]
    assert int(grades[student]["total"]) == TOTAL - lost[0]["max_score"]


def executed(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Run `notebook` in a fresh kernel. The kernel talks over IPC sockets in a folder of its
    own: a TCP port chosen free can be taken by another test's kernel before it is bound."""
    with tempfile.TemporaryDirectory() as folder:
        manager = KernelManager(kernel_name="python3", transport="ipc",
                                ip=str(Path(folder) / "kernel"))
        NotebookClient(notebook, km=manager, timeout=120, allow_errors=True).execute()
    return notebook


def errors_of(notebook: nbformat.NotebookNode) -> list[str]:
    return [f"{out.ename}: {out.evalue}" for cell in notebook.cells
            for out in cell.get("outputs", []) if out.output_type == "error"]


def shown(cell, mime: str) -> str:
    """What a cell's result renders as, in one mime type."""
    return "".join(out.get("data", {}).get(mime, "") for out in cell.get("outputs", []))


def cells_by_id(notebook: nbformat.NotebookNode) -> dict:
    return {cell.metadata["nbgrader"]["grade_id"]: cell for cell in notebook.cells}


@pytest.mark.parametrize("path", sorted(EXERCISES_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_untouched_exercise_notebooks_run_to_the_end_saying_not_attempted(path):
    notebook = executed(nbformat.read(path, 4))
    assert errors_of(notebook) == []
    cells = cells_by_id(notebook)
    checks = [grade_id for grade_id, cell in cells.items()
              if cell.metadata["nbgrader"].get("grade")]
    assert checks
    for grade_id in checks:
        assert 'data-status="not attempted"' in shown(cells[grade_id], "text/html"), grade_id
    lesson = path.name[:2]
    points = sum(cells[grade_id].metadata["nbgrader"]["points"] for grade_id in checks)
    assert f"score: 0 of {points} points" in shown(cells[f"{lesson}-summary"], "text/plain")


def test_a_workspace_notebook_shows_each_verdict_and_the_graders_score(tmp_path):
    """Lesson 00 answered (one answer off by one), run as a learner runs it: the check cells
    render passed and wrong with the first difference, and the summary shows the score the
    autograder then gives the same notebook."""
    notebook = nbformat.read(EXERCISES_DIR / "00-the-machine.ipynb", 4)
    answers = {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in
               nbformat.read(SOLUTIONS / "00-the-machine.ipynb", 4).cells}
    cells = cells_by_id(notebook)
    for grade_id in ("00-split-address", "00-decode-entry", "00-walk"):
        cells[grade_id].source = answers[grade_id]
    cells["00-split-address"].source = answers["00-split-address"].replace(
        "shift -= bits", "shift -= bits - 1")
    executed(notebook)
    assert errors_of(notebook) == []
    wrong = shown(cells["00-split-address-check"], "text/html")
    assert 'data-status="wrong"' in wrong and "first difference" in wrong
    assert "index (level" in wrong and "you gave" in wrong
    for grade_id in ("00-decode-entry", "00-walk"):
        assert 'data-status="passed"' in shown(cells[f"{grade_id}-check"], "text/html")
    assert 'data-status="not attempted"' in shown(cells["00-error-code-check"], "text/html")
    assert "score: 5 of 8 points" in shown(cells["00-summary"], "text/plain")

    (tmp_path / "learner").mkdir()
    nbformat.write(notebook, tmp_path / "learner" / "00-the-machine.ipynb")
    lesson_00 = tmp_path / "solutions"
    lesson_00.mkdir()
    shutil.copy(SOLUTIONS / "00-the-machine.ipynb", lesson_00)
    process = subprocess.run([sys.executable, "-m", "refimpl.grading", "grade",
                              str(tmp_path / "learner"), "--out", str(tmp_path / "out"),
                              "--solutions", str(lesson_00)],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "learner" / "results.json").read_text())["score"] == 5


def test_check_exercises_command_passes():
    process = subprocess.run([sys.executable, "-m", "refimpl.grading", "check-exercises"],
                             capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr


@pytest.mark.skipif(sandbox.unavailable() is not None, reason="no isolation here")
@pytest.mark.parametrize("call", ["mm.ensure_pte", "mm.ensure_pte.__wrapped__.__get__(mm)"])
def test_the_reference_of_the_exercise_is_not_available_in_its_cell(tmp_path, call):
    """The real course: ensure_pte answered with the kernel's own ensure_pte (directly, or
    through the way back that functools.wraps would leave)."""
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    shutil.copy(ROOT / "solutions" / "03-page-tables-and-refcounts.ipynb", solutions)
    notebook = nbformat.read(solutions / "03-page-tables-and-refcounts.ipynb", 4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "03-ensure-pte":
            cell.source = "def ensure_pte(mm, directory, vaddr):\n" \
                          f"    return {call}(directory, vaddr)"
    (tmp_path / "class" / "lazy").mkdir(parents=True)
    nbformat.write(notebook, tmp_path / "class" / "lazy" / "03.ipynb")
    [result] = grade_class(tmp_path / "class", tmp_path / "out", solutions=solutions,
                           jobs=1, progress=io.StringIO())
    verdict = result.exercises[0].verdict
    assert result.exercises[0].grade_id == "03-ensure-pte"
    assert verdict.status == "wrong"
    assert ("write this yourself" if "wrapped" not in call else "no attribute '__wrapped__'") \
        in verdict.output
    assert [exercise.verdict.status for exercise in result.exercises[1:]] == ["passed", "passed"]
    assert json.loads((tmp_path / "out" / "lazy" / "results.json").read_text())["score"] == 5


def test_an_instructors_hidden_seeds_replace_the_public_ones(tmp_path):
    """`--checks refimpl.grading.checks --checks hidden.py`: the hidden cases come from the
    instructor's file, which students never have; the solutions still get full marks."""
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    shutil.copy(SOLUTIONS / "00-the-machine.ipynb", solutions)
    hidden = tmp_path / "hidden.py"
    hidden.write_text("from refimpl.grading.checks import common\ncommon.HIDDEN_SEED = 52_817\n")
    isolation = [] if sandbox.unavailable() is None else ["--no-isolation"]
    process = subprocess.run(
        [sys.executable, "-m", "refimpl.grading", "grade", str(solutions), "--out",
         str(tmp_path / "out"), "--solutions", str(solutions), "--checks",
         "refimpl.grading.checks", "--checks", str(hidden), *isolation],
        capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    expected = json.loads((tmp_path / "out" / "reference.json").read_text())["expected"]
    cases = [case[0] for case in expected["00-walk"]]
    assert cases[0].startswith("machine random_tiny_machine(52817), address ")
    assert not any("(1000)" in case for case in cases)
    assert (tmp_path / "out" / "grades.csv").read_text().endswith(",8,8\n")
