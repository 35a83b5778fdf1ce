"""Grading a class of 30 honest students: today's isolated, judged grader against the grader as
it was before the sandbox (commit BEFORE), side by side in the same run.

    .venv/bin/python benchmarks/bench_grading.py [--students 30] [--rounds 2] [--jobs 2]

Both graders run as `python -m refimpl.grading grade` on the same class (copies of
`solutions/`) with the same number of jobs; the old one from `git archive BEFORE`, so its own
`refimpl` is the one imported. Rounds alternate old and new; the best round of each counts.
Goal (issue 11): new <= 1.5x old. The new grader does more per class: the solutions are graded
once first (the records verdicts are judged against), and each kernel process starts in a
bubblewrap sandbox.
"""

from __future__ import annotations

import argparse
import io
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


def old_grader(folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "refimpl", "solutions",
                              "pyproject.toml"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder)
    return folder


def grade(project: Path, submissions: Path, out: Path, jobs: int) -> float:
    shutil.rmtree(out, ignore_errors=True)  # no resuming: grade everyone every round
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refimpl.grading", "grade", str(submissions), "--out",
                    str(out), "--jobs", str(jobs), "--solutions", str(project / "solutions")],
                   cwd=project, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        old = old_grader(folder / "old")
        submissions = folder / "class"
        for number in range(args.students):
            shutil.copytree(ROOT / "solutions", submissions / f"student-{number:02}")
        best = {"old": float("inf"), "new": float("inf")}
        for _ in range(args.rounds):
            best["old"] = min(best["old"], grade(old, submissions, folder / "out-old", args.jobs))
            best["new"] = min(best["new"], grade(ROOT, submissions, folder / "out-new", args.jobs))
        new_grades = (folder / "out-new" / "grades.csv").read_text().splitlines()[1:]
        old_grades = (folder / "out-old" / "grades.csv").read_text().splitlines()[1:]
        assert [row.split(",")[-2:] for row in new_grades] == \
            [row.split(",")[-2:] for row in old_grades], "the two graders disagree"
    print(f"{args.students} students, {args.jobs} jobs, best of {args.rounds} rounds")
    print(f"grader before the sandbox ({BEFORE}): {best['old']:7.1f} s")
    print(f"isolated, judged grader:          {best['new']:7.1f} s")
    print(f"ratio: {best['new'] / best['old']:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
