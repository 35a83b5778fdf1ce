"""The registry of exercises: what each one is called, is worth, and how it is checked.

An exercise lives in a notebook under `solutions/` as two cells with nbgrader metadata:
- a *solution* cell, `grade_id` = the exercise's id, defining `names` (the answer sits between
  `### BEGIN SOLUTION` and `### END SOLUTION`);
- a *check* cell, `grade_id` = id + "-check", `points` = its points, whose source is one call,
  `grade("<id>")` (`refimpl.grading.feedback`).
`grade` runs the visible cases and renders the result; the autograder calls
`check(..., hidden=True)`, which runs more cases, from seeds no student notebook contains.

A check runs next to the learner's code, so the autograder trusts only its record
(`transcript.py`), judged in the grader's own process: by default against the solutions' record;
with a `judge`, by that trusted function, for answers that are plain data with more than one
right value (a set of names and a schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


class CheckFailed(AssertionError):
    """A wrong answer; the message says where it first differs from the reference. A check may
    attach a `drawing` of that difference (HTML): the check cell shows it under the message,
    while the grader keeps the message alone, a short line."""

    def __init__(self, message: str = "", drawing: str = "") -> None:
        super().__init__(message)
        self.drawing = drawing


@dataclass(frozen=True)
class Exercise:
    grade_id: str
    title: str
    points: int
    names: tuple[str, ...]
    check: Callable[..., str]
    """check(*definitions, hidden=False) -> a line of success feedback; raises CheckFailed."""
    forbids: tuple[str, ...] = ()
    """Dotted paths of the reference functions this exercise asks the learner to write: the
    autograder makes them raise "write this yourself" in the learner's answer cell."""
    judge: Callable[[list], str] | None = None
    """judge(record) -> a line of success feedback; raises CheckFailed. Trusted: the grader
    calls it in its own process on the record (plain data) the learner's process sent, instead
    of comparing that record with the solutions'. The check calls it too, for the notebook."""


EXERCISES: dict[str, Exercise] = {}


def exercise(grade_id: str, title: str, points: int, *names: str, forbids: tuple[str, ...] = (),
             judge: Callable[[list], str] | None = None):
    """Register the decorated check function as the check of exercise `grade_id`."""
    def register(check: Callable[..., str]) -> Callable[..., str]:
        EXERCISES[grade_id] = Exercise(grade_id, title, points, names, check, tuple(forbids),
                                       judge)
        return check
    return register

