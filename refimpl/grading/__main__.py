"""The command line: generate the exercises, check they are up to date, grade a class.

    python -m refimpl.grading generate         [--solutions DIR] [--exercises DIR]
    python -m refimpl.grading check-exercises  [--solutions DIR] [--exercises DIR]
                                               [--checks MODULE_OR_FILE ...]
    python -m refimpl.grading grade SUBMISSIONS --out RESULTS [--solutions DIR] [--timeout S]
                                   [--memory MB] [--jobs N] [--checks MODULE_OR_FILE ...]
                                   [--no-isolation] [--one-student]
    python -m refimpl.grading release OUT [--solutions DIR]
    python -m refimpl.grading gradescope BUNDLE.zip [--solutions DIR] [--checks FILE ...]
                                        [--no-isolation]
    refimpl-grade SUBMISSIONS --out RESULTS [...]     (the same as `grade`)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refimpl.grading.exercises import EXERCISES
from refimpl.grading.generate import (EXERCISES_DIR, SOLUTIONS, check_exercises, generate_all,
                                      registry_problems)
from refimpl.grading.grader import DEFAULT_CHECKS, grade_class, summary
from refimpl.grading.instructor import gradescope_bundle, release
from refimpl.grading.kernel import Limits
from refimpl.grading.sandbox import IsolationUnavailable
from refimpl.grading.worker import load_checks


def _folders(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS,
                        help="the solution notebooks (default: %(default)s)")
    parser.add_argument("--exercises", type=Path, default=EXERCISES_DIR,
                        help="the generated exercise notebooks (default: %(default)s)")


def _checks(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checks", action="append", default=None,
                        help="module or .py file registering the exercises; repeatable "
                             f"(default: {DEFAULT_CHECKS[0]})")


def _grade_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", type=Path,
                        help="a folder of notebooks (one student) or of such folders (a class)")
    parser.add_argument("--out", type=Path, required=True,
                        help="where grades.csv and <student>/results.json go")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS,
                        help="the solution notebooks, whose set-up cells are run "
                             "(default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=Limits.timeout,
                        help="seconds per exercise (default: %(default)s)")
    parser.add_argument("--memory", type=int, default=Limits.memory_mb,
                        help="MB of address space per kernel process (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="students graded at once (default: the number of CPUs)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="grade even where student code cannot be isolated (only for "
                             "code you trust: it then runs as you, with your files)")
    parser.add_argument("--one-student", action="store_true",
                        help="SUBMISSIONS is one student's folder, whatever is inside")
    _checks(parser)


def generate(args: argparse.Namespace) -> int:
    try:
        changes = generate_all(args.solutions, args.exercises)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    for change in changes:
        print(change)
    return 0


def check(args: argparse.Namespace) -> int:
    load_checks(args.checks or list(DEFAULT_CHECKS))
    problems = check_exercises(args.solutions, args.exercises)
    problems += registry_problems(args.solutions, EXERCISES)
    if not problems:
        print(f"{args.exercises} is what {args.solutions} generates, and every exercise "
              f"has its cells")
        return 0
    for problem in problems:
        print(problem)
    print("fix: edit solutions/ (never exercises/), then `python -m refimpl.grading generate`")
    return 1


def grade(args: argparse.Namespace) -> int:
    if not args.submissions.is_dir():
        print(f"no folder {args.submissions}", file=sys.stderr)
        return 2
    checks = args.checks or list(DEFAULT_CHECKS)
    load_checks(checks)
    limits = Limits(timeout=args.timeout, memory_mb=args.memory)
    if args.no_isolation:
        print("WARNING: --no-isolation: student code runs as you, can read and write your "
              "files, and can change its own grade and others'", file=sys.stderr)
    try:
        results = grade_class(args.submissions, args.out, solutions=args.solutions,
                              limits=limits, jobs=args.jobs, checks=checks,
                              isolated=not args.no_isolation, one_student=args.one_student)
    except IsolationUnavailable as error:
        print(f"REFUSING TO GRADE: student code cannot be isolated here: {error}.\n"
              f"Grade as root on Linux with bubblewrap installed, or pass --no-isolation "
              f"to grade code you trust anyway.", file=sys.stderr)
        return 3
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(summary(results, args.out))
    return 0


def release_command(args: argparse.Namespace) -> int:
    for path in release(args.out, args.solutions):
        print(path)
    return 0


def gradescope_command(args: argparse.Namespace) -> int:
    bundle = gradescope_bundle(args.bundle, args.solutions, args.checks or [],
                               isolated=not args.no_isolation)
    print(f"wrote {bundle}: upload it as the autograder (zip file upload, Ubuntu base image)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.grading",
                                     description="Exercises and the autograder.")
    commands = parser.add_subparsers(dest="command", required=True)
    _folders(commands.add_parser("generate", help="write exercises/ from solutions/"))
    checking = commands.add_parser("check-exercises", help="fail when exercises/ is not what "
                                   "solutions/ generates, or a check is missing")
    _folders(checking)
    _checks(checking)
    _grade_arguments(commands.add_parser("grade", help="grade submitted notebooks"))
    releasing = commands.add_parser("release", help="write the student bundle (exercises "
                                    "only) in nbgrader's layout: OUT/release/<lesson>/")
    releasing.add_argument("out", type=Path)
    releasing.add_argument("--solutions", type=Path, default=SOLUTIONS)
    bundling = commands.add_parser("gradescope", help="write Gradescope's autograder zip")
    bundling.add_argument("bundle", type=Path)
    bundling.add_argument("--solutions", type=Path, default=SOLUTIONS)
    bundling.add_argument("--checks", action="append", default=None,
                          help="an instructor's checks file (hidden cases), bundled; repeatable")
    bundling.add_argument("--no-isolation", action="store_true",
                          help="for images where bubblewrap cannot run")
    args = parser.parse_args(argv)
    return {"generate": generate, "check-exercises": check, "grade": grade,
            "release": release_command, "gradescope": gradescope_command}[args.command](args)


def grade_main(argv: list[str] | None = None) -> int:
    """The `refimpl-grade` console script: `grade` without the sub-command."""
    parser = argparse.ArgumentParser(prog="refimpl-grade", description="Grade notebooks.")
    _grade_arguments(parser)
    return grade(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
