"""Lesson 08's exercises: realistic mistakes, each caught by the scheduler with feedback that
points at it (harmless variants: test_exercises_variants.py)."""

import re

import pytest

from refimpl.grading import EXERCISES, CheckFailed
from tests.test_exercises import definitions

SCHEDULE = '"ABBBAAB"'
MISTAKES = {
    "a reader the stopgap fixed": ("08-missed-site", ('"Coredump"', '"Coredump", "dump_regions"'),
                                   "dump_regions against a thread creation: all 14 "
                                   "interleavings saw a consistent tree"),
    "a missed reader left out": ("08-missed-site", ('"sys$fork", ', ""),
                                 "the stopgap missed 4 of the readers; you named 3"),
    "a name that is not a reader": ("08-missed-site", ('"sys$fork"', '"fork"'),
                                    "'fork' is not a reader"),
    "the insert before the walk": ("08-missed-site", (SCHEDULE, '"BBBAAA"'),
                                   "saw a consistent tree"),
    "a step of a finished thread": ("08-missed-site", (SCHEDULE, '"AAAAB"'),
                                    "which has finished"),
    "one name, not a list": ("08-missed-site", ("return missed,", "return missed[0],"),
                             "must return (a list of reader names"),
    "a lock, but not the one the insert holds": (
        "08-lookup-lock", ("tree_lock = mm.region_tree.get_lock()",
                           "tree_lock = type(mm.region_tree.get_lock())('a lock of my own')"),
        "your lookup returned None for the live stack's address"),
    "unregister before unmap (0a83c035469^)": (
        "08-region-destroy",
        ('    region.unmap()\n    yield "unmapped"\n    yield from mm.unregister_kernel_region_steps'
         '(region)\n    yield "unregistered"\n',
         '    yield from mm.unregister_kernel_region_steps(region)\n    yield "unregistered"\n'
         '    region.unmap()\n    yield "unmapped"\n'),
        "page 0 has no present PTE"),
    "never unregistered": (
        "08-region-destroy", ("yield from mm.unregister_kernel_region_steps(region)", "yield"),
        "still in the kernel tree"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_realistic_mistake_is_caught(mistake):
    grade_id, replace, feedback = MISTAKES[mistake]
    with pytest.raises(CheckFailed, match=re.escape(feedback)):
        EXERCISES[grade_id].check(*definitions(grade_id, replace), hidden=False)
