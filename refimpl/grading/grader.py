"""The autograder: a folder of submissions in, a CSV of scores and Gradescope results out.

A student is a folder of notebooks, any names, any layout below it (symbolic links are not
followed). Their answers are found by `grade_id`, so renamed notebooks and reordered or deleted
cells do not matter; their other code cells (helpers) run after the cell they follow, as
nbgrader runs them; set-up cells come from the trusted `solutions/`, and check cells are
replaced by the hidden checks. Each notebook of `solutions/` is replayed in its own kernel
process (`kernel.py`), isolated (`sandbox.py`).

The trust split: what comes back from a kernel process is a claim. This process decides each
verdict: an exercise passes only when the process says so *and* its record of the learner's
answers (`transcript.py`, plain JSON) equals, with exact types, the record the solutions
produce on the same hidden cases, computed once per class; or, for an exercise with a trusted
`judge` (several right answers), when that judge, run here, accepts the record. Each student's results are written
as soon as they are known, so a re-run with the same set-up resumes. Submissions are only ever
read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import sys
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

from refimpl.grading.exercises import EXERCISES, CheckFailed
from refimpl.grading.generate import (SOLUTIONS, generate_exercise_notebook, is_setup,
                                      is_solution, nbgrader, read_notebook)
from refimpl.grading.kernel import Limits, Step, Verdict, checks_payload, run_steps
from refimpl.grading.sandbox import IsolationUnavailable, unavailable
from refimpl.grading.transcript import same

DEFAULT_CHECKS = ("refimpl.grading.checks",)


@dataclass(frozen=True)
class Reference:
    """What `solutions/` says: per notebook, its set-up steps and its answers in order (an
    answer step holds the exercise's stub, the source of an untouched exercise)."""
    notebooks: dict[str, list[Step]]

    def stubs(self) -> dict[str, str]:
        return {step.grade_id: step.source for steps in self.notebooks.values()
                for step in steps if step.kind == "answer"}

    def graded(self) -> list[str]:
        """The exercises to grade, in notebook order: the answers asked whose check is
        registered (an instructor grading one lesson passes a solutions folder holding it)."""
        return [grade_id for grade_id in self.stubs() if grade_id in EXERCISES]

    def notebook_of(self, grade_id: str) -> str:
        return next(name for name, steps in self.notebooks.items()
                    if any(step.grade_id == grade_id for step in steps))


@dataclass(frozen=True)
class ExerciseResult:
    grade_id: str
    title: str
    points: int
    verdict: Verdict

    @property
    def score(self) -> int:
        return self.points if self.verdict.status == "passed" else 0


@dataclass(frozen=True)
class StudentResult:
    student: str
    exercises: tuple[ExerciseResult, ...]
    """In notebook order."""
    notes: tuple[str, ...] = ()
    """What the grader had to decide about the submission (an unreadable notebook, a grade_id
    found twice)."""

    @property
    def score(self) -> int:
        return sum(result.score for result in self.exercises)

    @property
    def max_score(self) -> int:
        return sum(result.points for result in self.exercises)

    def gradescope(self) -> dict:
        """Gradescope's results.json."""
        results = {"score": self.score, "tests": [
            {"name": f"{result.grade_id}: {result.title}", "score": result.score,
             "max_score": result.points, "output": result.verdict.output}
            for result in self.exercises]}
        if self.notes:
            results["output"] = "\n".join(self.notes)
        return results


def read_reference(solutions_dir: Path = SOLUTIONS) -> Reference:
    """Set-up and answer steps of every solution notebook, from its generated exercise."""
    notebooks = {}
    for path in sorted(solutions_dir.glob("*.ipynb")):
        exercise = generate_exercise_notebook(read_notebook(path))
        notebooks[path.name] = [
            Step("setup" if is_setup(cell) else "answer", nbgrader(cell)["grade_id"], cell.source)
            for cell in exercise.cells if is_setup(cell) or is_solution(cell)]
    return Reference(notebooks)


MAX_NOTEBOOK_BYTES = 32 * 2**20


def find_students(submissions: Path) -> list[tuple[str, Path]]:
    """(name, folder) of each student: the folder itself when notebooks sit directly in it,
    else each visible subfolder (a symbolic link included: it is graded as empty)."""
    if any(path.suffix == ".ipynb" and path.is_file() for path in submissions.iterdir()):
        return [(submissions.resolve().name, submissions)]
    return [(path.name, path) for path in sorted(submissions.iterdir())
            if path.is_dir() and not path.name.startswith(".")]


def student_notebooks(folder: Path) -> tuple[list[Path], list[str]]:
    """Every notebook under `folder`, except in hidden folders (.ipynb_checkpoints), and
    notes on the symbolic links skipped: a link could point at a classmate's work."""
    found, notes = [], []
    if folder.is_symlink():
        return [], [f"{folder.name} is a symbolic link: not followed"]
    for top, folders, files in os.walk(folder):
        relative = Path(top).relative_to(folder)
        for name in sorted(folders):
            if name.startswith(".") or (Path(top) / name).is_symlink():
                if not name.startswith("."):
                    notes.append(f"{relative / name} is a symbolic link: not followed")
                folders.remove(name)
        for name in files:
            if name.endswith(".ipynb") and not name.startswith("."):
                if (Path(top) / name).is_symlink():
                    notes.append(f"{relative / name} is a symbolic link: not followed")
                else:
                    found.append(Path(top) / name)
    return sorted(found), sorted(notes)


def _read_notebook(path: Path) -> dict:
    """A notebook's JSON, read without following a link, at most MAX_NOTEBOOK_BYTES."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = file.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    notebook = json.loads(data.decode("utf-8"))
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ValueError("not a Jupyter notebook (version 4)")
    return notebook


def _code_cells(path: Path) -> list[tuple[str | None, str]]:
    """(grade_id or None, source) of the code cells of a notebook read as plain JSON: a
    submission may be anything, and nothing in it is validated or rewritten."""
    found = []
    for cell in _read_notebook(path)["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata")
        marks = meta.get("nbgrader") if isinstance(meta, dict) else None
        grade_id = marks.get("grade_id") if isinstance(marks, dict) else None
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if isinstance(source, str):
            found.append((grade_id if isinstance(grade_id, str) else None, source))
    return found


@dataclass
class Submission:
    """What the grader takes from a student's folder."""
    answers: dict[str, str] = field(default_factory=dict)
    """grade_id -> the source of the learner's answer."""
    helpers: dict[str, list[Step]] = field(default_factory=dict)
    """grade_id of a cell -> the learner's other code cells that follow it ("run" steps);
    "before:" + grade_id for those above the first cell the grader knows."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Name of a notebook that could not be read -> why."""
    notes: list[str] = field(default_factory=list)


def collect_answers(folder: Path, stubs: dict[str, str], known: frozenset[str] = frozenset()
                    ) -> Submission:
    """The learner's answers and helper cells. `known`: every grade_id of the reference (the
    learner's copies of set-up and check cells are not run: the grader has its own). When
    several cells share an answer's grade_id (a copied notebook, a duplicated cell), the last
    one that is not the untouched stub wins, in path order then cell order."""
    candidates: dict[str, list[tuple[str, str]]] = {}
    submission = Submission()
    paths, submission.notes = student_notebooks(folder)
    known = known | set(stubs) | {f"{grade_id}-check" for grade_id in stubs}
    for path in paths:
        where = str(path.relative_to(folder))
        try:
            cells = _code_cells(path)
        except (OSError, ValueError, RecursionError) as error:
            submission.notes.append(f"could not read {where}: {error}")
            submission.unreadable[path.name] = f"{where} could not be read: {error}"
            continue
        anchor, pending = None, []
        for number, (grade_id, source) in enumerate(cells):
            if grade_id in stubs:
                candidates.setdefault(grade_id, []).append((where, source))
            if grade_id in known:
                anchor = grade_id.removesuffix("-check") if grade_id not in stubs and \
                    grade_id.removesuffix("-check") in stubs else grade_id
                if pending:
                    submission.helpers.setdefault(f"before:{anchor}", []).extend(pending)
                    pending = []
            elif source.strip():
                step = Step("run", f"{where} cell {number}", source)
                if anchor is None:
                    pending.append(step)
                else:
                    submission.helpers.setdefault(anchor, []).append(step)
    for grade_id, found in sorted(candidates.items()):
        attempted = [(where, source) for where, source in found
                     if source.strip() != stubs[grade_id].strip()]
        where, submission.answers[grade_id] = (attempted or found)[-1]
        if len({source for _, source in attempted}) > 1:
            submission.notes.append(f"{len(attempted)} different cells have grade_id "
                                    f"{grade_id}: graded the last one, in {where}")
    return submission


def _plan(reference: list[Step], submission: Submission, notebook: str
          ) -> tuple[list[Step], dict[str, Verdict]]:
    """The steps to run for one notebook, and the verdicts known without running anything."""
    steps, verdicts = [], {}
    answers = submission.answers
    for step in reference:
        answer = answers.get(step.grade_id)
        graded = step.grade_id in EXERCISES
        steps += submission.helpers.get(f"before:{step.grade_id}", [])
        if step.kind == "setup":
            steps.append(step)
        elif answer is None:
            if graded and notebook in submission.unreadable:
                verdicts[step.grade_id] = Verdict(
                    "not attempted", f"not attempted: {submission.unreadable[notebook]}")
            elif graded:
                verdicts[step.grade_id] = Verdict(
                    "not attempted", f"not attempted: no cell with grade_id {step.grade_id} in "
                                     f"your notebooks")
        elif graded and answer.strip() not in ("", step.source.strip()):
            steps.append(Step("exercise", step.grade_id, answer))
        else:
            steps.append(Step("run", step.grade_id, answer))
            if graded:
                verdicts[step.grade_id] = Verdict("not attempted", "not attempted: the cell is "
                                                  + ("the exercise as handed out"
                                                     if answer.strip() else "empty"))
        steps += submission.helpers.get(step.grade_id, [])
    return steps, verdicts


@dataclass(frozen=True)
class Grading:
    """How a class is graded: the reference, the limits, the checks (as sent to the kernel
    processes), isolation, and the solutions' records that the verdicts are judged against."""
    reference: Reference
    limits: Limits = Limits()
    checks: tuple = DEFAULT_CHECKS
    isolated: bool = True

    def fingerprint(self) -> str:
        """Changes whenever anything that decides a grade changes: resuming is safe."""
        state = [{name: [asdict(step) for step in steps]
                  for name, steps in self.reference.notebooks.items()},
                 asdict(self.limits), list(self.checks), self.isolated]
        return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode())\
            .hexdigest()


def judge(grade_id: str, claimed: Verdict, expected: list | None) -> Verdict:
    """The verdict, decided here: a claimed pass stands only when the exercise's trusted judge
    accepts the learner's record, or else when that record equals the solutions' record with
    exact types (the first case that differs is shown). Any other claim stands (a learner
    forging one only loses points)."""
    trusted = getattr(EXERCISES.get(grade_id), "judge", None)
    if claimed.status == "passed" and trusted is not None:
        return _trusted_verdict(trusted, claimed)
    if claimed.status != "passed" or expected is None:
        return claimed
    got = list(claimed.record)
    for position, wanted in enumerate(expected):
        mine = got[position] if position < len(got) else None
        if not same(mine, wanted):
            case = wanted[0] if isinstance(wanted, list) and wanted else f"case {position}"
            shown = "nothing" if mine is None else json.dumps(mine[1:] if isinstance(mine, list)
                                                              else mine)[:300]
            return Verdict("wrong", f"wrong: {case}: the grader expected "
                                    f"{json.dumps(wanted[1:])[:300]}, your answer gave {shown}",
                           claimed.record)
    if len(got) != len(expected):
        return Verdict("wrong", f"wrong: your answer was checked on {len(got)} cases, the "
                                f"grader's hidden checks have {len(expected)}", claimed.record)
    return claimed


def _trusted_verdict(trusted, claimed: Verdict) -> Verdict:
    """The trusted judge's verdict on the record: its own line when it passes, never the line
    the learner's process sent."""
    try:
        return Verdict("passed", trusted([list(line) if isinstance(line, list) else line
                                          for line in claimed.record]), claimed.record)
    except CheckFailed as failure:
        return Verdict("wrong", f"wrong: {failure}", claimed.record)
    except Exception as error:  # noqa: BLE001 - a forged record of any shape is only wrong
        return Verdict("wrong", f"wrong: the grader could not read your answer "
                                f"({type(error).__name__}: {str(error)[:200]})", claimed.record)


def judged(result: StudentResult, expected: dict) -> StudentResult:
    """The student's result with every verdict judged against the solutions' records."""
    return StudentResult(result.student, tuple(
        ExerciseResult(exercise.grade_id, exercise.title, exercise.points,
                       judge(exercise.grade_id, exercise.verdict, expected.get(exercise.grade_id)))
        for exercise in result.exercises), result.notes)


def grade_student(name: str, folder: Path, grading: Grading) -> StudentResult:
    """The claimed verdicts for the reference's exercises, for the student whose notebooks
    are under `folder` (`judged` decides them)."""
    reference = grading.reference
    known = frozenset(step.grade_id for steps in reference.notebooks.values() for step in steps)
    submission = collect_answers(folder, reference.stubs(), known)
    verdicts: dict[str, Verdict] = {}
    for notebook, steps in reference.notebooks.items():
        plan, decided = _plan(steps, submission, notebook)
        verdicts.update(decided)
        if any(step.kind == "exercise" for step in plan):
            verdicts.update(run_steps(plan, grading.limits, grading.checks, grading.isolated))
    return StudentResult(name, tuple(
        ExerciseResult(grade_id, EXERCISES[grade_id].title, EXERCISES[grade_id].points,
                       verdicts[grade_id]) for grade_id in reference.graded()),
        tuple(submission.notes))


def _grade_or_report(name: str, folder: Path, grading: Grading) -> StudentResult:
    """Grade one student; a failure of the grader itself is printed and becomes that
    student's verdicts, never the end of the class."""
    reference = grading.reference
    try:
        return grade_student(name, folder, grading)
    except Exception as error:  # noqa: BLE001 - one student must never stop the class
        traceback.print_exc()
        verdict = Verdict("crashed", f"crashed: the grader failed: {type(error).__name__}: "
                                     f"{error}")
        return StudentResult(name, tuple(
            ExerciseResult(grade_id, EXERCISES[grade_id].title, EXERCISES[grade_id].points,
                           verdict) for grade_id in reference.graded()))


class Progress:
    """A text bar over the class: redrawn in place on a terminal, one line per student
    elsewhere (a CI log)."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total, self.done, self.stream, self.width = total, 0, stream, width
        self.live = stream.isatty()

    def advance(self, label: str) -> None:
        self.done += 1
        filled = self.width * self.done // max(self.total, 1)
        line = f"grading [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
        if self.live:
            end = "\n" if self.done == self.total else ""
            print(f"\r{line} {label[:40]:<40}", end=end, file=self.stream, flush=True)
        else:
            print(f"{line} {label}", file=self.stream, flush=True)


def expected_records(result: StudentResult) -> dict:
    """The solutions graded as a student (in the same box): their record per exercise. A
    solution that does not pass its own check stops the grading: nothing could be judged."""
    result = judged(result, {})
    failing = [f"{exercise.grade_id}: {exercise.verdict.output}"
               for exercise in result.exercises if exercise.verdict.status != "passed"]
    if failing:
        raise ValueError("the solutions do not pass their own checks:\n" + "\n".join(failing))
    return {exercise.grade_id: list(exercise.verdict.record) for exercise in result.exercises}


def grade_class(submissions: Path, out: Path, *, solutions: Path = SOLUTIONS,
                limits: Limits = Limits(), jobs: int | None = None,
                checks: Sequence[str] = DEFAULT_CHECKS, progress: TextIO | None = None,
                isolated: bool = True, one_student: bool = False) -> list[StudentResult]:
    """Grade every student in `submissions` (`jobs` at a time) and write the results to `out`,
    each student's as soon as they are known; students already graded the same way (a run
    that was stopped) are not graded again. The checks must already be loaded in this process
    (`worker.load_checks`). Raises IsolationUnavailable unless student code can be isolated
    or `isolated` is False. `one_student`: `submissions` is one student's folder, whatever
    is inside (Gradescope's /autograder/submission)."""
    submissions, out = submissions.resolve(), out.resolve()
    if out == submissions or submissions in out.parents:
        raise ValueError(f"the results folder {out} is inside the submissions {submissions}, "
                         f"which are never written to")
    if isolated and (why := unavailable()):
        raise IsolationUnavailable(why)
    reference = read_reference(solutions)
    if not reference.graded():
        raise ValueError(f"no notebook in {solutions} has an exercise with a check registered "
                         f"by {', '.join(checks)}")
    stream = progress or sys.stderr
    unchecked = sorted(set(reference.stubs()) - set(reference.graded()))
    if unchecked:
        print(f"not graded, no check is registered: {', '.join(unchecked)}", file=stream)
    grading = Grading(reference, limits, tuple(checks_payload(list(checks))), isolated)
    fingerprint = grading.fingerprint()
    students = [(submissions.name, submissions)] if one_student else find_students(submissions)
    bar = Progress(len(students), stream)
    results, todo = [], []
    for name, folder in students:
        done = _graded_before(out, name, _student_fingerprint(fingerprint, folder))
        if done is None:
            todo.append((name, folder))
        else:
            results.append(done)
            bar.advance(f"{name}: {done.score}/{done.max_score} (graded before)")
    out.mkdir(parents=True, exist_ok=True)
    expected = _saved_reference(out, fingerprint) if todo else {}
    waiting: list[tuple[StudentResult, Path]] = []

    def finish(result: StudentResult, folder: Path) -> None:
        results.append(judged(result, expected))
        write_student(results[-1], out, _student_fingerprint(fingerprint, folder))
        write_tables(results, out)
        bar.advance(f"{results[-1].student}: {results[-1].score}/{results[-1].max_score}")

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        # the solutions first, alongside the class: a student waits for them only to be judged
        futures = {} if expected or not todo else {
            pool.submit(grade_student, "solutions", solutions, grading): None}
        futures.update({pool.submit(_grade_or_report, name, folder, grading): folder
                        for name, folder in todo})
        for future in as_completed(futures):
            folder = futures[future]
            if folder is None:
                try:
                    expected = expected_records(future.result())
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
                _write(out / "reference.json", json.dumps(
                    {"fingerprint": fingerprint, "expected": expected}) + "\n")
                for result, folder in waiting:
                    finish(result, folder)
            elif expected:
                finish(future.result(), folder)
            else:
                waiting.append((future.result(), folder))
    results.sort(key=lambda result: result.student)
    write_tables(results, out)
    return results


def grades_csv(results: Sequence[StudentResult]) -> str:
    """One row per student: a column per exercise id with its score, then total and max."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    ids = [result.grade_id for result in results[0].exercises] if results else []
    writer.writerow(["student", *ids, "total", "max"])
    for student in results:
        writer.writerow([student.student, *(result.score for result in student.exercises),
                         student.score, student.max_score])
    return text.getvalue()


def verdicts_csv(results: Sequence[StudentResult]) -> str:
    """One row per student and exercise, in notebook order: the score and the reason
    ("wrong: ...", "crashed: ...": the first line of the feedback)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["student", "exercise", "score", "max", "status", "reason"])
    for student in sorted(results, key=lambda result: result.student):
        for result in student.exercises:
            writer.writerow([student.student, result.grade_id, result.score, result.points,
                             result.verdict.status, result.verdict.output.splitlines()[0]])
    return text.getvalue()


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a grader killed mid-write leaves the previous file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_student(result: StudentResult, out: Path, fingerprint: str) -> None:
    """out/<student>/results.json (Gradescope's format) and out/<student>/grading.json (what
    a re-run needs to resume)."""
    (out / result.student).mkdir(parents=True, exist_ok=True)
    _write(out / result.student / "results.json",
           json.dumps(result.gradescope(), indent=2, ensure_ascii=False) + "\n")
    _write(out / result.student / "grading.json",
           json.dumps({"fingerprint": fingerprint, "result": asdict(result)}) + "\n")


def _saved_reference(out: Path, fingerprint: str) -> dict:
    """The solutions' records of an earlier run graded the same way, or {}."""
    try:
        saved = json.loads((out / "reference.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved.get("expected", {}) if saved.get("fingerprint") == fingerprint else {}


def _student_fingerprint(fingerprint: str, folder: Path) -> str:
    """The grading's fingerprint and the submission's files (name, size, time): a changed
    submission is graded again."""
    paths, _ = student_notebooks(folder)
    files = [(str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
             for path in paths]
    return hashlib.sha256(json.dumps([fingerprint, files]).encode()).hexdigest()


def _graded_before(out: Path, name: str, fingerprint: str) -> StudentResult | None:
    try:
        saved = json.loads((out / name / "grading.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if saved.get("fingerprint") != fingerprint:
        return None
    result = saved["result"]
    return StudentResult(result["student"], tuple(
        ExerciseResult(exercise["grade_id"], exercise["title"], exercise["points"],
                       Verdict(exercise["verdict"]["status"], exercise["verdict"]["output"],
                               tuple(exercise["verdict"]["record"])))
        for exercise in result["exercises"]), tuple(result["notes"]))


def write_tables(results: Sequence[StudentResult], out: Path) -> None:
    """out/grades.csv and out/verdicts.csv, over the students graded so far."""
    ordered = sorted(results, key=lambda result: result.student)
    _write(out / "grades.csv", grades_csv(ordered))
    _write(out / "verdicts.csv", verdicts_csv(ordered))


def write_results(results: Sequence[StudentResult], out: Path, fingerprint: str = "") -> None:
    """Everything: the tables and each student's files."""
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        write_student(result, out, fingerprint)
    write_tables(results, out)


def summary(results: Sequence[StudentResult], out: Path) -> str:
    """One line for the end of a run: the class's mean, and how the verdicts fell."""
    if not results:
        return f"no students found; wrote {out / 'grades.csv'}"
    mean = sum(result.score for result in results) / len(results)
    counts = Counter(exercise.verdict.status for result in results
                     for exercise in result.exercises)
    statuses = ("passed", "wrong", "not attempted", "crashed", "timed out")
    verdicts = ", ".join(f"{counts[status]} {status}" for status in statuses if counts[status])
    return (f"graded {len(results)} student(s): mean {mean:.1f} of {results[0].max_score} "
            f"points; {verdicts}; results in {out}")
