"""The checks of every exercise, one module per lesson: the learner's code against the
reference, on seeded cases.

Each check runs the visible cases (seeds 0, 1, ...) or, for the autograder, hidden ones (seeds
from 1000 on, which no notebook shows), and stops at the first case where the learner's answer
differs from the reference, saying where: which index, which flag bit, which reference count,
which region boundary. An exception from the learner's code is reported as a wrong answer on
that case, except NotImplementedError, which means "not attempted" and propagates.

Importing this package registers the exercises of every lesson.
"""

from refimpl.grading.checks import (lesson00, lesson01, lesson02, lesson03,  # noqa: F401
                                    lesson04, lesson05, lesson06, lesson07, lesson08,
                                    lesson09)
from refimpl.grading.checks.lesson01 import first_fit_with_guard_pages
from refimpl.grading.checks.lesson03 import reentrancy_events
from refimpl.grading.checks.lesson05 import cache_steps

__all__ = ["cache_steps", "first_fit_with_guard_pages", "reentrancy_events"]
