"""The grading machinery on toy exercises: the generator, check-exercises, and the autograder's
verdicts on notebooks that loop, crash, print megabytes, raise, or lose and reorder cells."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from refimpl.grading import sandbox
from refimpl.grading.exercises import EXERCISES
from refimpl.grading.generate import (check_exercises, generate_all, generate_exercise_notebook,
                                      generated_exercises, is_setup, notebook_bytes,
                                      read_notebook, registry_problems, stub_regions)
from refimpl.grading.grader import collect_answers, grade_class, read_reference
from refimpl.grading.kernel import Limits, Step, Verdict, run_steps
from refimpl.grading.worker import load_checks

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(timeout=1, memory_mb=512)
ISOLATED = sandbox.unavailable() is None
"""As root with bubblewrap (CI): in the sandbox. Elsewhere the grader would refuse; these tests
of its verdicts then say --no-isolation (test_grading_hostile.py tests the refusal)."""
NO_ISOLATION = [] if ISOLATED else ["--no-isolation"]
IDS = ["t1-double", "t1-square", "t1-quadruple", "t2-greet"]
POINTS = {"t1-double": 2, "t1-quadruple": 1, "t1-square": 3, "t2-greet": 1}

TOY_CHECKS = '''
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record


def compare(function, name, expected, hidden):
    numbers = range(-3, 40 if hidden else 4)
    for x in numbers:
        record(f"{name}({x})", function(x))
        if function(x) != expected(x):
            raise CheckFailed(f"{name}({x}) is {expected(x)}, yours gave {function(x)!r}")
    return f"{len(numbers)} numbers"


@exercise("t1-double", "Double a number", 2, "double")
def check_double(double, hidden=False):
    return "doubles " + compare(double, "double", lambda x: 2 * x, hidden)


@exercise("t1-square", "Square a number", 3, "square")
def check_square(square, hidden=False):
    return "squares " + compare(square, "square", lambda x: x * x, hidden)


@exercise("t1-quadruple", "Quadruple with double", 1, "quadruple")
def check_quadruple(quadruple, hidden=False):
    return "quadruples " + compare(quadruple, "quadruple", lambda x: 4 * x, hidden)


@exercise("t2-greet", "Greet", 1, "greet")
def check_greet(greet, hidden=False):
    if greet("Ada") != "hello, Ada":
        raise CheckFailed(f"greet('Ada') is 'hello, Ada', yours gave {greet('Ada')!r}")
    return "greets"
'''


def marks(grade_id: str, *, solution=False, grade=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    return {"nbgrader": meta | ({"points": points} if points else {})}


def text(cell_id, grade_id, source):
    return new_markdown_cell(source, id=cell_id, metadata=marks(grade_id))


def setup(cell_id, grade_id, source):
    return new_code_cell(source, id=cell_id, metadata=marks(grade_id))


def answer(cell_id, grade_id, source):
    return new_code_cell(source, id=cell_id, metadata=marks(grade_id, solution=True))


def check(cell_id, grade_id, name):
    return new_code_cell(f'grade("{grade_id}", {name})', id=cell_id,
                         metadata=marks(f"{grade_id}-check", grade=True,
                                        points=POINTS[grade_id]))


def solved(name, body):
    return f"def {name}(x):\n    ### BEGIN SOLUTION\n    {body}\n    ### END SOLUTION"


def toy_solutions() -> dict[str, nbformat.NotebookNode]:
    one = new_notebook(cells=[
        text("a0", "t1-text-0", "# Toy lesson 1"),
        setup("a1", "t1-setup-0", "from refimpl.grading import grade\nFACTOR = 2"),
        answer("a2", "t1-double", solved("double", "return FACTOR * x")),
        check("a3", "t1-double", "double"),
        answer("a4", "t1-square", solved("square", "return x * x")),
        check("a5", "t1-square", "square"),
        answer("a6", "t1-quadruple", solved("quadruple", "return double(double(x))")),
        check("a7", "t1-quadruple", "quadruple"),
        new_code_cell("quadruple(21)", id="a8"),
    ])
    two = new_notebook(cells=[
        setup("b0", "t2-setup-0", "from refimpl.grading import grade"),
        answer("b1", "t2-greet", 'GREETING = "hello"\n\ndef greet(name):\n'
                                 '    ### BEGIN SOLUTION\n    return f"{GREETING}, {name}"\n'
                                 '    ### END SOLUTION'),
        check("b2", "t2-greet", "greet"),
    ])
    return {"t1-numbers.ipynb": one, "t2-words.ipynb": two}


def write_notebooks(folder: Path, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    for name, nb in notebooks.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(notebook_bytes(nb))
    return folder


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    """Toy solutions/ and exercises/ folders, and their checks registered in place of the
    course's (restored afterwards)."""
    folder = tmp_path_factory.mktemp("toys")
    checks = folder / "toy_checks.py"
    checks.write_text(TOY_CHECKS)
    solutions = write_notebooks(folder / "solutions", toy_solutions())
    exercises = folder / "exercises"
    generate_all(solutions, exercises)
    saved = dict(EXERCISES)
    EXERCISES.clear()
    load_checks([str(checks)])
    yield SimpleNamespace(folder=folder, checks=str(checks), solutions=solutions,
                          exercises=exercises)
    EXERCISES.clear()
    EXERCISES.update(saved)


# The generator --------------------------------------------------------------------------------

def test_stub_regions_keep_the_code_around_them():
    source = ("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\ndef f():\n    if x:\n"
              "        ### BEGIN SOLUTION\n        return y\n        ### END SOLUTION\n"
              "    return 0")
    assert stub_regions(source) == ("x = 1\nraise NotImplementedError()\ndef f():\n    if x:\n"
                                    "        raise NotImplementedError()\n    return 0")
    assert stub_regions(solved("f", "return 1") + "\n") == (
        "def f(x):\n    raise NotImplementedError()\n")


def test_exercise_notebook_shape_and_metadata():
    solution = toy_solutions()["t1-numbers.ipynb"]
    solution.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for cell in solution.cells:
        if cell.cell_type == "code":
            cell.execution_count = 7
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
            cell.metadata["execution"] = {"iopub.status.idle": "2024-01-01T00:00:00Z"}
    before = notebook_bytes(solution)
    exercise = generate_exercise_notebook(solution)
    assert notebook_bytes(solution) == before, "the solution notebook must not change"
    assert "widgets" not in exercise.metadata
    *handed_out, summary_text, summary = exercise.cells
    assert [cell.id for cell in handed_out] == [cell.id for cell in solution.cells]
    assert summary_text.cell_type == "markdown" and "Your score" in summary_text.source
    assert summary.source.endswith("summary('t1')") and not is_setup(summary)
    assert summary.metadata["editable"] is False and summary.metadata["deletable"] is False
    cells = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell for cell in handed_out}
    assert cells["t1-double"].source == "def double(x):\n    raise NotImplementedError()"
    assert cells["t1-setup-0"].source == "from refimpl.grading import grade\nFACTOR = 2"
    for cell, original in zip(handed_out, solution.cells, strict=True):
        assert cell.metadata.get("nbgrader") == original.metadata.get("nbgrader")
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert "execution" not in cell.metadata
    locked = ["t1-text-0", "t1-setup-0", "t1-double-check", "t1-square-check"]
    for grade_id in locked:
        assert cells[grade_id].metadata["editable"] is False
        assert cells[grade_id].metadata["deletable"] is False
    assert "editable" not in cells["t1-double"].metadata
    assert "BEGIN SOLUTION" not in notebook_bytes(exercise).decode()


def test_generation_is_byte_identical_every_time(tmp_path):
    solutions = write_notebooks(tmp_path / "solutions", toy_solutions())
    first = generated_exercises(solutions)
    assert first == generated_exercises(solutions)
    assert generate_all(solutions, tmp_path / "exercises") != []
    assert generate_all(solutions, tmp_path / "exercises") == []
    assert {path.name: path.read_bytes() for path in (tmp_path / "exercises").iterdir()} == first
    # another process, another hash seed: the same bytes
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-m", "refimpl.grading", "generate", "--solutions",
                    str(solutions), "--exercises", str(tmp_path / "again")], check=True,
                   env=env, capture_output=True)
    assert {path.name: path.read_bytes() for path in (tmp_path / "again").iterdir()} == first


@pytest.mark.parametrize("cells, message", [
    ([answer("c", "x", "### BEGIN SOLUTION\ny = 1")], "without 'END SOLUTION'"),
    ([answer("c", "x", "y = 1\n### END SOLUTION")], "without 'BEGIN SOLUTION'"),
    ([answer("c", "x", "### BEGIN SOLUTION\n### BEGIN SOLUTION")], "a second"),
    ([answer("c", "x", "y = 1")], "has no 'BEGIN SOLUTION'"),
    ([setup("c", "s", "### BEGIN SOLUTION\ny = 1\n### END SOLUTION")], "not a solution cell"),
])
def test_the_generator_refuses_what_would_hand_out_an_answer(tmp_path, cells, message):
    write_notebooks(tmp_path, {"bad.ipynb": new_notebook(cells=cells)})
    with pytest.raises(ValueError, match=message):
        generated_exercises(tmp_path)


def test_cells_without_ids_are_refused_rather_than_given_random_ones(tmp_path):
    raw = json.loads(notebook_bytes(toy_solutions()["t2-words.ipynb"]))
    del raw["cells"][1]["id"]
    (tmp_path / "t2.ipynb").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"cells \[1\] have no id"):
        read_notebook(tmp_path / "t2.ipynb")


def test_check_exercises_finds_modified_missing_and_extra_files(toys, tmp_path):
    exercises = tmp_path / "exercises"
    generate_all(toys.solutions, exercises)
    assert check_exercises(toys.solutions, exercises) == []
    edited = nbformat.read(exercises / "t1-numbers.ipynb", as_version=4)
    edited.cells[2].source = "def double(x):\n    return 2 * x"
    nbformat.write(edited, exercises / "t1-numbers.ipynb")
    (exercises / "t2-words.ipynb").unlink()
    (exercises / "stale.ipynb").write_text("{}")
    assert check_exercises(toys.solutions, exercises) == [
        f"{exercises / 't1-numbers.ipynb'} differs from what "
        f"{toys.solutions / 't1-numbers.ipynb'} generates",
        f"{exercises / 't2-words.ipynb'} is missing",
        f"{exercises / 'stale.ipynb'} has no source {toys.solutions / 'stale.ipynb'}",
    ]
    assert len(generate_all(toys.solutions, exercises)) == 3
    assert check_exercises(toys.solutions, exercises) == []


def test_check_exercises_command_fails_until_regenerated(toys, tmp_path):
    exercises = tmp_path / "exercises"
    generate_all(toys.solutions, exercises)
    (exercises / "t2-words.ipynb").write_text("{}")

    def command(name):
        return subprocess.run([sys.executable, "-m", "refimpl.grading", name, "--solutions",
                               str(toys.solutions), "--exercises", str(exercises)]
                              + (["--checks", toys.checks] if name == "check-exercises" else []),
                              capture_output=True, text=True)

    failed = command("check-exercises")
    assert failed.returncode == 1
    assert "t2-words.ipynb differs" in failed.stdout
    assert "python -m refimpl.grading generate" in failed.stdout
    assert command("generate").returncode == 0
    assert command("check-exercises").returncode == 0


def test_the_committed_exercises_are_generated_from_the_solutions():
    result = subprocess.run([sys.executable, "-m", "refimpl.grading", "check-exercises"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_registry_problems(toys, tmp_path):
    assert registry_problems(toys.solutions, EXERCISES) == []
    notebooks = toy_solutions()
    cells = notebooks["t1-numbers.ipynb"].cells
    cells[3].metadata.nbgrader.points = 5
    del cells[5]
    cells.append(answer("a9", "t1-cube", solved("cube", "return x ** 3")))
    cells.append(answer("a10", "t2-greet", solved("greet", "return 'hi'")))
    write_notebooks(tmp_path, notebooks)
    assert registry_problems(tmp_path, EXERCISES) == [
        "t1-numbers.ipynb: t1-double-check gives 5 points, the registry 2",
        "t1-numbers.ipynb: no check is registered for 't1-cube'",
        "t2-words.ipynb: grade_id 't2-greet' is also in t1-numbers.ipynb",
        "t1-numbers.ipynb: 't1-cube' has no check cell t1-cube-check",
        "t1-numbers.ipynb: 't1-square' has no check cell t1-square-check",
    ]


# The autograder -------------------------------------------------------------------------------

P, N, W, C, T = "passed", "not attempted", "wrong", "crashed", "timed out"


def edited(notebooks, answers=None, drop=()):
    """The notebooks with some answers replaced and some cells deleted, by grade_id."""
    result = {}
    for name, nb in notebooks.items():
        nb = copy.deepcopy(nb)
        nb.cells = [cell for cell in nb.cells
                    if cell.metadata.get("nbgrader", {}).get("grade_id") not in drop]
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            cell.source = (answers or {}).get(grade_id, cell.source)
        result[name] = nb
    return result


def reordered(notebooks):
    """Cells reversed, notebooks renamed and moved into a subfolder."""
    result = {}
    for number, nb in enumerate(notebooks.values()):
        nb = copy.deepcopy(nb)
        nb.cells.reverse()
        result[f"work/mine {number}.ipynb"] = nb
    return result


LOOP = "def square(x):\n    while True:\n        pass"
STUDENTS = {
    # name: (notebooks from the toy solutions, verdicts of t1-double, -square, -quadruple,
    #        t2-greet: notebook order)
    "correct": (lambda solutions, exercises: solutions, [P, P, P, P]),
    "untouched": (lambda solutions, exercises: exercises, [N, N, N, N]),
    "wrong": (lambda s, e: edited(s, {"t1-double": "def double(x):\n    return x + 2"}),
              [W, P, W, P]),
    "loops": (lambda s, e: edited(s, {"t1-square": LOOP}), [P, T, P, P]),
    "deaf": (lambda s, e: edited(s, {"t1-square": "import signal\nsignal.signal("
                                     "signal.SIGALRM, signal.SIG_IGN)\n" + LOOP}),
             [P, T, P, P]),
    "exits": (lambda s, e: edited(s, {"t1-double": "import os\nos._exit(3)"}), [C, P, C, P]),
    "segfault": (lambda s, e: edited(s, {"t1-square": "import ctypes\nctypes.string_at(0)"}),
                 [P, C, P, P]),
    "chatty": (lambda s, e: edited(s, {"t1-double": 'print("x" * 50_000_000)\n\n'
                                                    'def double(x):\n    return 2 * x'}),
               [P, P, P, P]),
    "raises": (lambda s, e: edited(s, {"t2-greet": "greeting = 'hello'\n1 / 0"}), [P, P, P, C]),
    "deleted": (lambda s, e: edited(s, drop={"t1-square", "t1-setup-0"}), [P, N, P, P]),
    "reordered": (lambda s, e: reordered(s), [P, P, P, P]),
    "hog": (lambda s, e: edited(s, {"t1-double": "hog = bytearray(2 ** 40)"}), [C, P, C, P]),
}


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def graded(toys):
    """The toy class graded once, two students at a time."""
    solutions = {path.name: nbformat.read(path, as_version=4)
                 for path in sorted(toys.solutions.glob("*.ipynb"))}
    exercises = {path.name: nbformat.read(path, as_version=4)
                 for path in sorted(toys.exercises.glob("*.ipynb"))}
    submissions = toys.folder / "class"
    for student, (make, _) in STUDENTS.items():
        write_notebooks(submissions / student, make(solutions, exercises))
    before = tree_hashes(submissions)
    progress = io.StringIO()
    out = toys.folder / "results"
    results = grade_class(submissions, out, solutions=toys.solutions, limits=LIMITS, jobs=2,
                          checks=[toys.checks], progress=progress, isolated=ISOLATED)
    return SimpleNamespace(results={result.student: result for result in results}, out=out,
                           before=before, after=tree_hashes(submissions),
                           progress=progress.getvalue())


@pytest.mark.parametrize("student", STUDENTS)
def test_each_exercise_gets_its_verdict(graded, student):
    result = graded.results[student]
    assert [exercise.grade_id for exercise in result.exercises] == IDS
    statuses = [exercise.verdict.status for exercise in result.exercises]
    assert statuses == STUDENTS[student][1]
    for exercise, status in zip(result.exercises, statuses, strict=True):
        assert exercise.verdict.output.startswith(status)
        assert exercise.score == (POINTS[exercise.grade_id] if status == P else 0)


def output(graded, student, grade_id):
    return next(exercise.verdict.output for exercise in graded.results[student].exercises
                if exercise.grade_id == grade_id)


def test_feedback_says_what_happened(graded):
    assert output(graded, "correct", "t1-double") == "passed: doubles 43 numbers"
    assert output(graded, "wrong", "t1-double") == (
        "wrong: double(-3) is -6, yours gave -1")
    assert output(graded, "untouched", "t1-double") == (
        "not attempted: the cell is the exercise as handed out")
    assert output(graded, "deleted", "t1-square") == (
        "not attempted: no cell with grade_id t1-square in your notebooks")
    assert output(graded, "loops", "t1-square") == "timed out after 1 s"
    assert output(graded, "deaf", "t1-square").startswith(
        "timed out after 1 s (the code could not be interrupted")
    assert output(graded, "exits", "t1-double") == (
        "crashed: the kernel process exited with status 3")
    quadruple = output(graded, "exits", "t1-quadruple")
    assert quadruple.startswith("crashed: NameError: name 'double' is not defined")
    assert 'File "<cell t1-quadruple>", line 3, in quadruple' in quadruple
    segfault = output(graded, "segfault", "t1-square")
    assert segfault.startswith("crashed: the kernel process was killed by SIGSEGV")
    assert '"<cell t1-square>", line 2' in segfault
    raised = output(graded, "raises", "t2-greet")
    assert raised.startswith("crashed: ZeroDivisionError: division by zero\n")
    assert '\n  File "<cell t2-greet>", line 2, in <module>\n    1 / 0' in raised
    assert output(graded, "hog", "t1-double").startswith(
        "crashed: MemoryError (the memory limit is 512 MB)")


def test_megabytes_of_output_are_capped(graded):
    chatty = output(graded, "chatty", "t1-double")
    assert chatty.startswith("passed: doubles 43 numbers\n\nprinted (the first 2,048 of "
                             "50,000,001 characters):\nxxx")
    assert len(chatty) < 2200


def test_submissions_are_never_modified(graded):
    assert graded.after == graded.before


def test_the_csv_and_gradescope_results(graded):
    rows = list(csv.reader((graded.out / "grades.csv").read_text().splitlines()))
    assert rows[0] == ["student", *IDS, "total", "max"]
    expected = []
    for student, (_, statuses) in sorted(STUDENTS.items()):
        scores = [POINTS[grade_id] if status == P else 0
                  for grade_id, status in zip(IDS, statuses, strict=True)]
        expected.append([student, *map(str, scores), str(sum(scores)), "7"])
    assert rows[1:] == expected
    assert json.loads((graded.out / "wrong" / "results.json").read_text()) == {
        "score": 4,
        "tests": [
            {"name": "t1-double: Double a number", "score": 0, "max_score": 2,
             "output": "wrong: double(-3) is -6, yours gave -1"},
            {"name": "t1-square: Square a number", "score": 3, "max_score": 3,
             "output": "passed: squares 43 numbers"},
            {"name": "t1-quadruple: Quadruple with double", "score": 0, "max_score": 1,
             "output": "wrong: quadruple(-3) is -12, yours gave 1"},
            {"name": "t2-greet: Greet", "score": 1, "max_score": 1, "output": "passed: greets"},
        ]}
    assert sorted(path.name for path in graded.out.iterdir()) == sorted(
        [*STUDENTS, "grades.csv", "verdicts.csv", "reference.json"])
    reasons = list(csv.reader((graded.out / "verdicts.csv").read_text().splitlines()))
    assert reasons[0] == ["student", "exercise", "score", "max", "status", "reason"]
    assert ["raises", "t2-greet", "0", "1", "crashed",
            "crashed: ZeroDivisionError: division by zero"] in reasons
    assert ["wrong", "t1-double", "0", "2", "wrong",
            "wrong: double(-3) is -6, yours gave -1"] in reasons


def test_a_progress_bar_runs_over_the_class(graded):
    lines = graded.progress.splitlines()
    assert len(lines) == len(STUDENTS)
    assert lines[-1].startswith(f"grading [{'#' * 30}] {len(STUDENTS)}/{len(STUDENTS)} ")


def test_grading_one_student_from_the_command_line(toys, tmp_path):
    """A folder with notebooks in it is one student: the solutions get full marks."""
    result = subprocess.run(
        [sys.executable, "-m", "refimpl.grading", "grade", str(toys.solutions), "--out",
         str(tmp_path), "--solutions", str(toys.solutions), "--checks", toys.checks,
         "--timeout", "5", "--memory", "512", "--jobs", "1", *NO_ISOLATION],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"graded 1 student(s): mean 7.0 of 7 points; 4 passed; " \
                            f"results in {tmp_path}\n"
    assert "1/1 solutions: 7/7" in result.stderr
    assert (tmp_path / "grades.csv").read_text() == (
        f"student,{','.join(IDS)},total,max\nsolutions,2,3,1,1,7,7\n")


def test_the_handed_out_exercises_score_zero_without_running_anything(toys, tmp_path):
    [result] = grade_class(toys.exercises, tmp_path, solutions=toys.solutions,
                           checks=[toys.checks], progress=io.StringIO(), isolated=ISOLATED)
    assert result.score == 0 and result.max_score == 7


def test_results_are_never_written_inside_the_submissions(toys):
    with pytest.raises(ValueError, match="never written to"):
        grade_class(toys.exercises, toys.exercises / "results", solutions=toys.solutions,
                    checks=[toys.checks], progress=io.StringIO(), isolated=ISOLATED)


def test_answers_are_found_by_grade_id_in_any_notebook(toys, tmp_path):
    """A copied notebook, a duplicated cell and a broken file: the last attempted answer
    wins, and the student is told."""
    exercise = nbformat.read(toys.exercises / "t1-numbers.ipynb", as_version=4)
    copied = edited({"a.ipynb": exercise, "b-copy.ipynb": exercise},
                    {"t1-square": "def square(x):\n    return x ** 2"})
    copied["a.ipynb"].cells[4].source = "def square(x):\n    return x * x"
    copied["b-copy.ipynb"].cells[2].source = "def double(x):\n    return x + x"
    write_notebooks(tmp_path, copied)
    (tmp_path / "broken.ipynb").write_text("{not json")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text("{not json")
    stubs = {step.grade_id: step.source for steps in read_reference(toys.solutions)
             .notebooks.values() for step in steps if step.kind == "answer"}
    submission = collect_answers(tmp_path, stubs)
    answers, notes = submission.answers, submission.notes
    assert answers["t1-square"] == "def square(x):\n    return x ** 2"
    assert answers["t1-double"] == "def double(x):\n    return x + x"
    assert answers["t1-quadruple"] == "def quadruple(x):\n    raise NotImplementedError()"
    assert "t2-greet" not in answers
    assert notes[0].startswith("could not read broken.ipynb: Expecting property name")
    assert submission.unreadable["broken.ipynb"].startswith("broken.ipynb could not be read")
    assert notes[1:] == ["2 different cells have grade_id t1-square: graded the last one, in "
                         "b-copy.ipynb"]


DOUBLE = Step("exercise", "t1-double", "def double(x):\n    return 2 * x")
SQUARE = Step("exercise", "t1-square", "def square(x):\n    return x * x")


def test_a_failing_set_up_fails_the_exercises_after_it(toys):
    verdicts = run_steps([Step("setup", "s", "import no_such_module"), DOUBLE], LIMITS,
                         [toys.checks], ISOLATED)
    assert verdicts == {"t1-double": Verdict("crashed", "crashed: the set-up cell s failed: "
                                             "ModuleNotFoundError: No module named "
                                             "'no_such_module'")}
    verdicts = run_steps([DOUBLE, Step("setup", "s", "import os\nos._exit(5)"), SQUARE], LIMITS,
                         [toys.checks], ISOLATED)
    assert verdicts == {
        "t1-double": Verdict("passed", "passed: doubles 43 numbers"),
        "t1-square": Verdict("crashed", "crashed: during the set-up cell s, the kernel process "
                                        "exited with status 5")}


def test_a_kernel_process_that_cannot_start_fails_every_exercise():
    verdicts = run_steps([DOUBLE, SQUARE], LIMITS, ["no_such_checks_module"], ISOLATED)
    for verdict in verdicts.values():
        assert verdict.output.startswith("crashed: during the kernel process's start-up, the "
                                         "kernel process exited with status 1\n")
        assert verdict.output.endswith("No module named 'no_such_checks_module'")
    assert list(verdicts) == ["t1-double", "t1-square"]


# The instructor's workflow ---------------------------------------------------------------------

def test_release_writes_the_exercises_in_nbgraders_layout(toys, tmp_path):
    from refimpl.grading.instructor import release
    written = release(tmp_path, toys.solutions)
    assert [str(path.relative_to(tmp_path)) for path in written] == [
        "release/t1-numbers/t1-numbers.ipynb", "release/t2-words/t2-words.ipynb"]
    for path in written:
        assert path.read_bytes() == (toys.exercises / path.name).read_bytes()
        assert "BEGIN SOLUTION" not in path.read_text()


def test_practice_never_shows_a_hidden_case():
    from refimpl.grading import practice
    from refimpl.grading.checks.common import HIDDEN_SEED
    assert "answer" in repr(practice("00-walk", 7))
    with pytest.raises(ValueError, match="hidden cases"):
        practice("00-walk", HIDDEN_SEED + 3)


def test_the_gradescope_bundle_in_a_rehearsal_of_gradescopes_folders(toys, tmp_path):
    """The zip unpacked into a stand-in for /autograder/source, one student's notebooks (in a
    subfolder, as uploaded) in submission/, run_autograder run: results/results.json."""
    import zipfile

    from refimpl.grading.instructor import gradescope_bundle
    bundle = gradescope_bundle(tmp_path / "autograder.zip", toys.solutions, [toys.checks],
                               isolated=ISOLATED)
    autograder = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        archive.extractall(autograder / "source")
    assert {"setup.sh", "run_autograder", "pyproject.toml", "refimpl/grading/grader.py",
            "solutions/t1-numbers.ipynb", "checks/toy_checks.py"} <= set(names)
    assert not any(name.startswith(("exercises/", "tests/", ".venv")) for name in names)
    solutions = {path.name: nbformat.read(path, as_version=4)
                 for path in sorted(toys.solutions.glob("*.ipynb"))}
    wrong = edited(solutions, {"t1-double": "def double(x):\n    return x + 2"})
    write_notebooks(autograder / "submission" / "my work", wrong)
    (autograder / "results").mkdir()
    env = dict(os.environ, AUTOGRADER=str(autograder), PYTHON=sys.executable)
    run = subprocess.run(["bash", str(autograder / "source" / "run_autograder")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((autograder / "results" / "results.json").read_text())
    assert results["score"] == 4
    assert [test["score"] for test in results["tests"]] == [0, 3, 0, 1]
    assert results["tests"][0]["output"] == "wrong: double(-3) is -6, yours gave -1"


# The trust split --------------------------------------------------------------------------------

def test_a_claimed_pass_stands_only_with_the_solutions_record_exactly():
    from refimpl.grading.grader import judge
    expected = [["f(1)", 2], ["f(2)", [4, True]]]
    claim = Verdict("passed", "passed: 2 cases", (["f(1)", 2], ["f(2)", [4, True]]))
    assert judge("x", claim, expected) == claim
    for record, shown in [((["f(1)", 2], ["f(2)", [4, 1]]), "[[4, 1]]"),
                          ((["f(1)", 2], ["f(2)", [4.0, True]]), "[[4.0, true]]"),
                          ((["f(1)", 2],), "nothing")]:
        verdict = judge("x", Verdict("passed", "passed", record), expected)
        assert verdict.output == f"wrong: f(2): the grader expected [[4, true]], your answer " \
                                 f"gave {shown}"
    longer = judge("x", Verdict("passed", "passed", (*claim.record, ["f(3)", 6])), expected)
    assert longer.output == "wrong: your answer was checked on 3 cases, the grader's hidden " \
                            "checks have 2"
    crashed = Verdict("crashed", "crashed: ValueError", ())
    assert judge("x", crashed, expected) is crashed


@pytest.mark.parametrize("line, expected, current, steps, accepted", [
    (b'{"start": 0}', 0, None, 2, True),
    (b'{"start": 0}', 0, 0, 2, False),           # a step starts once: no keep-alive
    (b'{"start": 1}', 0, None, 2, False),        # in order
    (b'{"done": 0, "status": "passed", "output": "", "defined": true}', 0, 0, 2, True),
    (b'{"done": 0, "status": "passed", "output": "", "defined": 1}', 0, 0, 2, False),
    (b'{"done": 1, "status": "passed", "output": "", "defined": true}', 0, 0, 2, False),
    (b'{"finished": true}', 1, 0, 2, False),     # not before every step is done
    (b'{"finished": true}', 2, 1, 2, True),
    (b'[]', 0, None, 2, False),
    (b'still here', 0, None, 2, False),
])
def test_the_result_pipe_is_a_strict_protocol(line, expected, current, steps, accepted):
    from refimpl.grading.kernel import ProtocolError, _message
    if accepted:
        assert isinstance(_message(line, expected, current, steps), dict)
    else:
        with pytest.raises(ProtocolError):
            _message(line, expected, current, steps)
