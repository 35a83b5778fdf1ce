"""Answers that differ harmlessly from the reference must still pass the autograder, whose
verdict rests on the record a check sends (compared with the solutions' record, or judged by
the exercise's trusted judge). Each variant here is correct, and is checked the grader's way."""

import pytest

from refimpl.grading import EXERCISES, transcript
from refimpl.grading.grader import judge
from refimpl.grading.kernel import Verdict
from tests.test_exercises import definitions


def graded_record(grade_id, replace=None):
    """What the autograder's worker would send for this answer: its claimed line and record."""
    transcript.start()
    transcript.take()
    try:
        line = EXERCISES[grade_id].check(*definitions(grade_id, replace), hidden=True)
        return line, transcript.take()
    finally:
        transcript._recording = False


def grader_verdict(grade_id, replace=None) -> Verdict:
    _, expected = graded_record(grade_id)
    line, record = graded_record(grade_id, replace)
    return judge(grade_id, Verdict("passed", line, tuple(record)), expected)


PLACE = ("    with tree.get_lock():\n        found = tree._allocate_range_anywhere(size)\n"
         "        if found.is_error():\n            return False\n"
         "        tree._insert(region, found.value())\n    return True")
VARIANTS = {
    "06: a descent that also looks at the right child": (
        "06-lowest-gap", ("        left = node.left\n",
                          "        left, _ = node.left, node.right\n")),
    "07: the lock taken and released by hand": (
        "07-place-anywhere", (PLACE, "    lock = tree.get_lock()\n    lock.lock()\n    try:\n"
                                     "        found = tree._allocate_range_anywhere(size)\n"
                                     "        if found.is_error():\n            return False\n"
                                     "        tree._insert(region, found.value())\n"
                                     "    finally:\n        lock.unlock()\n    return True")),
    "08: another schedule that breaks the readers": (
        "08-missed-site", ('"ABBBAAB"', '"ABBBA"')),
    "08: the names as a set, in another order": (
        "08-missed-site", ("return missed,", "return set(reversed(missed)),")),
    "08: the locks released in the order taken": (
        "08-lookup-lock",
        ("            tree_lock.unlock()\n    finally:\n        mm.mm_lock.unlock()",
         "            mm.mm_lock.unlock()\n    finally:\n        if tree_lock.is_locked():\n"
         "            tree_lock.unlock()")),
    "08: labels of its own while holding the locks": (
        "08-lookup-lock", ("yield from tree_lock.acquire()",
                           "yield 'took m_lock'\n        yield from tree_lock.acquire()\n"
                           "        yield 'took the tree lock'")),
    "08: a label of its own before unmapping": (
        "08-region-destroy", ("    region.unmap()\n", "    yield 'about to unmap'\n"
                                                     "    region.unmap()\n")),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_harmless_variant_passes_the_autograder(variant):
    grade_id, replace = VARIANTS[variant]
    verdict = grader_verdict(grade_id, replace)
    assert verdict.status == "passed", verdict.output


def full_traversal(root, needed):
    """The right gap, found by visiting every node: not one descent."""
    found = []

    def walk(node):
        if node is not None:
            walk(node.left)
            if node.size >= needed:
                found.append([node.base, node.size])
            walk(node.right)
    walk(root)
    return found[0] if found else None


@pytest.mark.parametrize("forged, message", [
    (lambda got, reached: reached, "nodes; one descent reaches at most"),
    (lambda got, reached: [got[0]] if got else [], "did not reach the gap it returned"),
    (lambda got, reached: [], "did not reach the gap it returned"),
])
def test_the_judge_fails_a_full_traversal_whatever_it_says_it_reached(forged, message):
    """06: a search that visits every node finds the right gaps; a learner's process that
    records them with the nodes it really reached, or with a short list it made up (the gap
    itself, nothing), is still judged wrong, in the grader's own process."""
    from refimpl.grading.checks.lesson06 import WatchedNode, judge_lowest_gap, lowest_gap_cases
    from refimpl.grading.exercises import CheckFailed
    record = []
    for case, gaps, _, needed in lowest_gap_cases(hidden=True):
        reached = set()
        got = full_traversal(WatchedNode(gaps.root, reached), needed)
        record.append([case, got, forged(got, sorted(reached))])
    with pytest.raises(CheckFailed, match=message):
        judge_lowest_gap(record)
