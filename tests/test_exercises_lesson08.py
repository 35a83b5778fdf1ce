"""Lesson 08's exercises: realistic mistakes, each caught by the scheduler with feedback that
points at it."""

import re

import pytest

from refimpl.grading import EXERCISES, CheckFailed
from tests.test_exercises import definitions

MISTAKES = {
    "a reader the stopgap fixed": ("08-missed-site", ('"sys$fork"', '"amount_virtual"'),
                                   "not a missed site"),
    "a name that is not a reader": ("08-missed-site", ('"sys$fork"', '"fork"'),
                                    "a_missed_site() must return one of"),
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
