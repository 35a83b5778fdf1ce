"""Grading a class of 30 honest students: today's isolated, judged grader against the grader as
it was before the sandbox (commit BEFORE), side by side in the same run.

    .venv/bin/python benchmarks/bench_grading.py [--students 30] [--batch 5] [--jobs 2]

Both graders run as `python -m refimpl.grading grade` on the same class with the same number of
jobs; the old one from `git archive BEFORE`, so its own `refimpl` is the one imported. The class
hands in today's solutions of the lessons the old grader knows (00-04), and the new grader is
given those lessons' solutions only: both grade the same exercises (lessons added since would
make the comparison one of workloads, not of graders). On a shared machine the load changes from minute to minute, so
the class is graded in batches, old and new in turn on each batch (who goes first alternates),
and each grader's times are summed: both meet the same moments of noise. The new grader keeps
one results folder, as a class run would: it grades the solutions once (in its first batch: the
records verdicts are judged against) and reuses their records after. Goal (issue 11): new <=
1.5x old. Since BEFORE the kernel itself has grown slower on these checks (the kernel RegionTree,
kmalloc expansion through pre-created page tables...), so the same run also times the hidden
checks alone, in a plain process, with each project's kernel: the ratio of the two ratios is
the graders' own difference.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "af6a708"
"""The last commit before the sandbox and the trust split."""
MAX = "37"
"""Every student hands in the solutions of lessons 00-04: full marks from both graders."""


def old_grader(folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "refimpl", "solutions",
                              "pyproject.toml"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder)
    return folder


def grade(project: Path, solutions: Path, submissions: Path, out: Path, jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refimpl.grading", "grade", str(submissions), "--out",
                    str(out), "--jobs", str(jobs), "--solutions", str(solutions)],
                   cwd=project, check=True, capture_output=True)
    return time.perf_counter() - start


CHECKS_ALONE = """
import json, time
from pathlib import Path
from refimpl.grading import EXERCISES
total = 0.0
for path in sorted(Path(SOLUTIONS).glob("*.ipynb")):
    cells = [cell for cell in json.loads(path.read_text())["cells"]
             if cell["cell_type"] == "code"]
    namespace = {}
    for cell in cells:
        if not cell["metadata"].get("nbgrader", {}).get("grade"):
            exec("".join(cell["source"]), namespace)
    for cell in cells:
        marks = cell["metadata"].get("nbgrader", {})
        if marks.get("solution") and marks.get("grade_id") in EXERCISES:
            exercise = EXERCISES[marks["grade_id"]]
            start = time.perf_counter()
            exercise.check(*(namespace[name] for name in exercise.names), hidden=True)
            total += time.perf_counter() - start
print(total)
"""


def checks_alone(project: Path, solutions: Path) -> float:
    """Seconds the hidden checks of one student's solutions take in one plain process, with
    the project's own kernel and checks: the work under each grader, without any grader."""
    script = CHECKS_ALONE.replace("SOLUTIONS", repr(str(solutions)))
    result = subprocess.run([sys.executable, "-c", script], cwd=project, check=True,
                            capture_output=True, text=True, env={**os.environ,
                                                                 "PYTHONPATH": str(project)})
    return float(result.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        old = old_grader(folder / "old")
        lessons = sorted(path.name for path in (old / "solutions").glob("*.ipynb"))
        same = folder / "new-solutions"
        same.mkdir()
        for name in lessons:
            shutil.copy(ROOT / "solutions" / name, same / name)
        total = {"old": 0.0, "new": 0.0}
        projects = {"old": old, "new": ROOT}
        solutions = {"old": old / "solutions", "new": same}
        for first in range(0, args.students, args.batch):
            batch = folder / f"batch-{first:02}"
            for number in range(first, min(first + args.batch, args.students)):
                (batch / f"student-{number:02}").mkdir(parents=True)
                for name in lessons:
                    shutil.copy(ROOT / "solutions" / name, batch / f"student-{number:02}" / name)
            order = ["old", "new"] if first // args.batch % 2 == 0 else ["new", "old"]
            for name in order:
                out = folder / f"out-{name}-{first:02}" if name == "old" else folder / "out-new"
                total[name] += grade(projects[name], solutions[name], batch, out, args.jobs)
                scores = [row.split(",")[-2:] for row in
                          (out / "grades.csv").read_text().splitlines()[1:]]
                assert len(scores) == min(args.batch, args.students - first)
                assert all(score == [MAX, MAX] for score in scores), scores
        work = {"old": 0.0, "new": 0.0}
        for name in ("old", "new", "new", "old"):
            work[name] += checks_alone(projects[name], solutions[name]) / 2
    ratio = total["new"] / total["old"]
    print(f"{args.students} students in batches of {args.batch}, {args.jobs} jobs")
    print(f"grader before the sandbox ({BEFORE}): {total['old']:7.1f} s")
    print(f"isolated, judged grader:          {total['new']:7.1f} s")
    print(f"ratio: {ratio:.2f}x (goal <= 1.5x)")
    print(f"the same hidden checks of one student, in one plain process, no grader: "
          f"{work['old']:.1f} s with {BEFORE}'s kernel, {work['new']:.1f} s with today's "
          f"({work['new'] / work['old']:.2f}x)")
    print(f"the grader's own cost, the kernel's growth taken out: "
          f"{ratio / (work['new'] / work['old']):.2f}x")


if __name__ == "__main__":
    main()
