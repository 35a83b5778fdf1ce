"""Exercises, their checks, the exercise generator and the autograder.

Importing this package registers every exercise (`refimpl.grading.checks`), so a check cell
needs only `grade`, and a notebook's summary cell only `summary`.
"""

from refimpl.grading import checks  # noqa: F401  (registers the exercises)
from refimpl.grading.checks import cache_steps, reentrancy_events
from refimpl.grading.exercises import EXERCISES, CheckFailed
from refimpl.grading.feedback import grade, summary
from refimpl.grading.problems import practice

__all__ = ["EXERCISES", "CheckFailed", "cache_steps", "grade", "practice", "reentrancy_events",
           "summary"]
