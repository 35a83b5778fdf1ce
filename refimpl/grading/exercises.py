"""The registry of exercises: what each one is called, is worth, and how it is checked.

An exercise lives in a notebook under `solutions/` as two cells with nbgrader metadata:
- a *solution* cell, `grade_id` = the exercise's id, defining `names` (the answer sits between
  `### BEGIN SOLUTION` and `### END SOLUTION`);
- a *check* cell, `grade_id` = id + "-check", `points` = its points, whose source is one call,
  `grade("<id>")` (`refimpl.grading.feedback`).
`grade` runs the visible cases and renders the result; the autograder calls
`check(..., hidden=True)`, which runs more cases, from seeds no student notebook contains.
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


EXERCISES: dict[str, Exercise] = {}


def exercise(grade_id: str, title: str, points: int, *names: str, forbids: tuple[str, ...] = ()):
    """Register the decorated check function as the check of exercise `grade_id`."""
    def register(check: Callable[..., str]) -> Callable[..., str]:
        EXERCISES[grade_id] = Exercise(grade_id, title, points, names, check, tuple(forbids))
        return check
    return register

