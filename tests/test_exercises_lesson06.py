"""Lesson 06's exercises: realistic mistakes, each caught with feedback that points at it."""

import re

import pytest

from refimpl.grading import EXERCISES, CheckFailed, practice
from refimpl.grading.checks.lesson06 import random_gap_tree
from tests.test_exercises import definitions

MISTAKES = {
    "exact-size holes": ("06-first-fit", ("if hole_size >= size + alignment:",
                                          "if hole_size >= size:"), "expected"),
    "forgot the tail": ("06-first-fit", ("holes.append((window_start, total.end - window_start))",
                                         "pass"), "expected [0x"),
    "the whole tail (02a95a196f0)": (
        "06-first-fit", ("return VirtualRange(aligned, size)",
                         "return VirtualRange(aligned, size if (base, hole_size) != holes[-1] "
                         "else hole_size)"), "expected"),
    "no rounding up": ("06-first-fit", ("return VirtualRange(aligned, size)",
                                        "return VirtualRange(base, size)"), "expected"),
    "lookup at base (02a95a196f0)": ("06-specific", ("base + size - 1", "base"), "(it overlaps"),
    "lookup at base + size (9765f9f67ed)": ("06-specific", ("base + size - 1", "base + size"),
                                            "(it overlaps"),
    "wrong side first": ("06-lowest-gap", ("if left is not None and left.largest >= needed:",
                                           "if node.size >= needed:\n            return "
                                           "node.base, node.size\n        if left is not None "
                                           "and left.largest >= needed:"), "expected"),
    "aligned end off by one": ("06-quirk", ("aligned + size <= hole.end",
                                            "aligned + size < hole.end"), "expected True"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_realistic_mistake_is_caught(mistake):
    grade_id, replace, feedback = MISTAKES[mistake]
    with pytest.raises(CheckFailed, match=re.escape(feedback)):
        EXERCISES[grade_id].check(*definitions(grade_id, replace), hidden=False)


def test_a_full_traversal_gives_right_answers_but_is_refused():
    def lowest_fitting(root, needed):
        found, stack, node = None, [], root
        while stack or node is not None:  # in-order, every node
            while node is not None:
                stack.append(node)
                node = node.left
            node = stack.pop()
            if found is None and node.size >= needed:
                found = (node.base, node.size)
            node = node.right
        return found
    with pytest.raises(CheckFailed, match="right answer, but your function reached"):
        EXERCISES["06-lowest-gap"].check(lowest_fitting)


def test_gap_trees_and_practice_are_seeded():
    assert list(random_gap_tree(4)) == list(random_gap_tree(4)) != list(random_gap_tree(5))
    fit = practice("06-first-fit", 3)
    assert "RegionTree" in repr(fit) and fit.answer() == practice("06-first-fit", 3).answer()
