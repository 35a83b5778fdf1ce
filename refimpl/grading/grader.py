"""The autograder: a folder of submissions in, a CSV of scores and Gradescope results out.

A student is a folder of notebooks, any names, any layout below it. Their answers are found by
`grade_id`, so renamed notebooks and reordered or deleted cells do not matter; everything else in
their notebooks (set-up, checks, scratch cells) is ignored. Each notebook of `solutions/` is then
replayed in its own kernel process (`kernel.py`): its own, trusted, set-up cells with the
learner's answers in its order, each answer followed by its exercise's hidden check.
Submissions are only ever read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TextIO

from refimpl.grading.exercises import EXERCISES
from refimpl.grading.generate import (SOLUTIONS, generate_exercise_notebook, is_setup,
                                      is_solution, nbgrader, read_notebook)
from refimpl.grading.kernel import Limits, Step, Verdict, run_steps

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
        """The exercises to grade, in id order: the answers asked whose check is registered
        (an instructor grading one lesson passes a solutions folder holding that lesson)."""
        return sorted(grade_id for grade_id in self.stubs() if grade_id in EXERCISES)


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
    """In exercise id order."""
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


def find_students(submissions: Path) -> list[tuple[str, Path]]:
    """(name, folder) of each student: the folder itself when notebooks sit directly in it,
    else each visible subfolder."""
    if any(path.suffix == ".ipynb" and path.is_file() for path in submissions.iterdir()):
        return [(submissions.resolve().name, submissions)]
    return [(path.name, path) for path in sorted(submissions.iterdir())
            if path.is_dir() and not path.name.startswith(".")]


def student_notebooks(folder: Path) -> list[Path]:
    """Every notebook under `folder`, except in hidden folders (.ipynb_checkpoints)."""
    return [path for path in sorted(folder.rglob("*.ipynb")) if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)]


def _answer_cells(path: Path) -> list[tuple[str, str]]:
    """(grade_id, source) of the code cells of a notebook read as plain JSON: a submission
    may be anything, and nothing in it is validated or rewritten."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ValueError("not a Jupyter notebook (version 4)")
    found = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata")
        marks = meta.get("nbgrader") if isinstance(meta, dict) else None
        grade_id = marks.get("grade_id") if isinstance(marks, dict) else None
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if isinstance(grade_id, str) and isinstance(source, str):
            found.append((grade_id, source))
    return found


def collect_answers(folder: Path, stubs: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """grade_id -> source of the learner's answer to each exercise, and notes. When several
    cells share a grade_id (a copied notebook, a duplicated cell), the last one that is not
    the untouched stub wins, in path order then cell order."""
    candidates: dict[str, list[tuple[str, str]]] = {}
    notes = []
    for path in student_notebooks(folder):
        where = str(path.relative_to(folder))
        try:
            cells = _answer_cells(path)
        except (OSError, ValueError) as error:
            notes.append(f"could not read {where}: {error}")
            continue
        for grade_id, source in cells:
            if grade_id in stubs:
                candidates.setdefault(grade_id, []).append((where, source))
    answers = {}
    for grade_id, found in sorted(candidates.items()):
        attempted = [(where, source) for where, source in found
                     if source.strip() != stubs[grade_id].strip()]
        where, answers[grade_id] = (attempted or found)[-1]
        if len({source for _, source in attempted}) > 1:
            notes.append(f"{len(attempted)} different cells have grade_id {grade_id}: graded "
                         f"the last one, in {where}")
    return answers, notes


def _plan(reference: list[Step], answers: dict[str, str]
          ) -> tuple[list[Step], dict[str, Verdict]]:
    """The steps to run for one notebook, and the verdicts known without running anything."""
    steps, verdicts = [], {}
    for step in reference:
        answer = answers.get(step.grade_id)
        graded = step.grade_id in EXERCISES
        if step.kind == "setup":
            steps.append(step)
        elif answer is None:
            if graded:
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
    return steps, verdicts


def grade_student(name: str, folder: Path, reference: Reference, limits: Limits = Limits(),
                  checks: Sequence[str] = DEFAULT_CHECKS) -> StudentResult:
    """Grade the reference's exercises for the student whose notebooks are under `folder`.
    The checks must already be loaded in this process (`worker.load_checks`)."""
    answers, notes = collect_answers(folder, reference.stubs())
    verdicts: dict[str, Verdict] = {}
    for steps in reference.notebooks.values():
        plan, known = _plan(steps, answers)
        verdicts.update(known)
        if any(step.kind == "exercise" for step in plan):
            verdicts.update(run_steps(plan, limits, checks))
    return StudentResult(name, tuple(
        ExerciseResult(grade_id, EXERCISES[grade_id].title, EXERCISES[grade_id].points,
                       verdicts[grade_id]) for grade_id in reference.graded()), tuple(notes))


def _grade_or_report(name: str, folder: Path, reference: Reference, limits: Limits,
                     checks: Sequence[str]) -> StudentResult:
    """Grade one student; a failure of the grader itself is printed and becomes that
    student's verdicts, never the end of the class."""
    try:
        return grade_student(name, folder, reference, limits, checks)
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


def grade_class(submissions: Path, out: Path, *, solutions: Path = SOLUTIONS,
                limits: Limits = Limits(), jobs: int | None = None,
                checks: Sequence[str] = DEFAULT_CHECKS, progress: TextIO | None = None
                ) -> list[StudentResult]:
    """Grade every student in `submissions` (`jobs` at a time) and write the results to `out`.
    The checks must already be loaded in this process (`worker.load_checks`)."""
    submissions, out = submissions.resolve(), out.resolve()
    if out == submissions or submissions in out.parents:
        raise ValueError(f"the results folder {out} is inside the submissions {submissions}, "
                         f"which are never written to")
    reference = read_reference(solutions)
    if not reference.graded():
        raise ValueError(f"no notebook in {solutions} has an exercise with a check registered "
                         f"by {', '.join(checks)}")
    stream = progress or sys.stderr
    unchecked = sorted(set(reference.stubs()) - set(reference.graded()))
    if unchecked:
        print(f"not graded, no check is registered: {', '.join(unchecked)}", file=stream)
    students = find_students(submissions)
    bar = Progress(len(students), stream)
    results = []
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [pool.submit(_grade_or_report, name, folder, reference, limits, checks)
                   for name, folder in students]
        for future in as_completed(futures):
            results.append(future.result())
            bar.advance(f"{results[-1].student}: {results[-1].score}/{results[-1].max_score}")
    results.sort(key=lambda result: result.student)
    write_results(results, out)
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


def write_results(results: Sequence[StudentResult], out: Path) -> None:
    """out/grades.csv, and out/<student>/results.json for each student."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "grades.csv").write_text(grades_csv(results), encoding="utf-8")
    for result in results:
        (out / result.student).mkdir(exist_ok=True)
        (out / result.student / "results.json").write_text(
            json.dumps(result.gradescope(), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8")


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
