"""Lesson 08's exercises: realistic mistakes, each caught by the scheduler with feedback that
points at it; and harmless variants of the answers, which the autograder must accept: the
record they send is the reference's (or, for the missed sites, the trusted judge passes it)."""

import re

import pytest

from refimpl.grading import EXERCISES, CheckFailed, transcript
from refimpl.grading.kernel import Verdict
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


def graded_record(grade_id, replace=None):
    """What the autograder's worker would send for this answer: its claimed line and record."""
    transcript.start()
    transcript.take()
    try:
        line = EXERCISES[grade_id].check(*definitions(grade_id, replace), hidden=True)
        return line, transcript.take()
    finally:
        transcript._recording = False


VARIANTS = {
    "another schedule that breaks them": ("08-missed-site", (SCHEDULE, '"ABBBA"')),
    "the names as a set, in another order": (
        "08-missed-site", ("return missed,", "return set(reversed(missed)),")),
    "the locks released in the order taken": (
        "08-lookup-lock",
        ("            tree_lock.unlock()\n    finally:\n        mm.mm_lock.unlock()",
         "            mm.mm_lock.unlock()\n    finally:\n        if tree_lock.is_locked():\n"
         "            tree_lock.unlock()")),
    "labels of its own while holding the locks": (
        "08-lookup-lock", ("yield from tree_lock.acquire()",
                           "yield 'took m_lock'\n        yield from tree_lock.acquire()\n"
                           "        yield 'took the tree lock'")),
    "a label of its own before unmapping": (
        "08-region-destroy", ("    region.unmap()\n", "    yield 'about to unmap'\n"
                                                     "    region.unmap()\n")),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_harmless_variant_passes_the_autograder(variant):
    from refimpl.grading.grader import judge
    grade_id, replace = VARIANTS[variant]
    _, expected = graded_record(grade_id)
    line, record = graded_record(grade_id, replace)
    verdict = judge(grade_id, Verdict("passed", line, tuple(record)), expected)
    assert verdict.status == "passed", verdict.output
