"""Grading a class of 30 honest students: today's isolated, judged grader against the grader as
it was before the sandbox (commit BEFORE), side by side in the same run.

    .venv/bin/python benchmarks/bench_grading.py [--students 30] [--batch 5] [--jobs 2]

Both graders run as `python -m refimpl.grading grade` on the same class (copies of
`solutions/`) with the same number of jobs; the old one from `git archive BEFORE`, so its own
`refimpl` is the one imported. On a shared machine the load changes from minute to minute, so
the class is graded in batches, old and new in turn on each batch (who goes first alternates),
and each grader's times are summed: both meet the same moments of noise. The new grader keeps
one results folder, as a class run would: it grades the solutions once (in its first batch: the
records verdicts are judged against) and reuses their records after. Goal (issue 11): new <=
1.5x old.
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
MAX = "37"
"""Every student hands in the solutions: full marks from both graders."""


def old_grader(folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "refimpl", "solutions",
                              "pyproject.toml"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder)
    return folder


def grade(project: Path, submissions: Path, out: Path, jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refimpl.grading", "grade", str(submissions), "--out",
                    str(out), "--jobs", str(jobs), "--solutions", str(project / "solutions")],
                   cwd=project, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        old = old_grader(folder / "old")
        total = {"old": 0.0, "new": 0.0}
        projects = {"old": old, "new": ROOT}
        for first in range(0, args.students, args.batch):
            batch = folder / f"batch-{first:02}"
            for number in range(first, min(first + args.batch, args.students)):
                shutil.copytree(ROOT / "solutions", batch / f"student-{number:02}")
            order = ["old", "new"] if first // args.batch % 2 == 0 else ["new", "old"]
            for name in order:
                out = folder / f"out-{name}-{first:02}" if name == "old" else folder / "out-new"
                total[name] += grade(projects[name], batch, out, args.jobs)
                scores = [row.split(",")[-2:] for row in
                          (out / "grades.csv").read_text().splitlines()[1:]]
                assert len(scores) == min(args.batch, args.students - first)
                assert all(score == [MAX, MAX] for score in scores), scores
    print(f"{args.students} students in batches of {args.batch}, {args.jobs} jobs")
    print(f"grader before the sandbox ({BEFORE}): {total['old']:7.1f} s")
    print(f"isolated, judged grader:          {total['new']:7.1f} s")
    print(f"ratio: {total['new'] / total['old']:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
