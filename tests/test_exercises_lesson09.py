"""Lesson 09's final project: realistic mistakes are caught at the step where the address space
first differs, drawn as two maps; a crash is not a wrong answer; the records carry the answers
themselves; and the autograder takes exactly the points of the exercise a mistake is in."""

import re
import shutil

import nbformat
import pytest

from refimpl.grading import EXERCISES, CheckFailed, sandbox, transcript
from refimpl.grading.feedback import Feedback, judge_with_drawing
from refimpl.grading.grader import grade_class
from tests.test_exercises import SOLUTIONS, definitions

NOTEBOOK = SOLUTIONS / "09-the-life-of-an-address-space.ipynb"
TAIL_OFF_BY_ONE = ("after = VirtualRange(hole.end, source.range.end - hole.end)",
                   "after = VirtualRange(hole.end + PAGE_SIZE, source.range.end - hole.end - "
                   "PAGE_SIZE)")
HOLE_KEEPS_OLD_ACCESS = ("region.range.intersect(wanted),\n" + " " * 53 + "access)",
                         "region.range.intersect(wanted),\n" + " " * 53 + "region.access)")

MISTAKES = {
    "the tail piece starts a page late": (
        "09-munmap", TAIL_OFF_BY_ONE, "step 4 of 25, munmap(0x1a18000, 0x5000): the reference "
                                      "has the region m2 [0x1a1d000, 0x1a1e000) r--, yours "
                                      "does not"),
    "the hole's entries are left mapped": (
        "09-munmap", ("        region.unmap()\n        for piece, piece_range",
                      "        region.page_directory = None\n        for piece, piece_range"),
        "the page at 0x1a1a000 maps 'nothing' in the reference, 'zero r' in yours, where no "
        "region is (a stray page table entry)"),
    "the tail piece at the old region's offset": (
        "09-munmap", ("offset = source.offset_in_vmobject + (piece.base - source.range.base)",
                      "offset = source.offset_in_vmobject"),
        "munmap(0x121a000, 0x2000): the page at 0x121c000 maps 'zero r' in the reference, "
        "'w5 rw' in yours"),
    "a size of zero unmaps nothing, successfully": (
        "09-munmap", ("    if size <= 0:\n", "    if size < 0:\n"),
        "munmap(0x1a13000, 0x0): the reference returned EINVAL, yours success"),
    "a text region unmapped": (
        "09-munmap", ('            return Error.from_errno(Errno.EPERM, f"{region!r} was not',
                      '            pass  # EPERM, f"{region!r} was not'),
        "the reference returned EPERM, yours success"),
    "the last holder copies anyway": (
        "09-cow-fault", ("    if old.ref_count() == 1:", "    if False:"),
        "the parent's page 0 holds 'p11..end0' in frame F1 (1 reference(s)), writable on the "
        "reference; with yours, 'p11..end0' in frame F8"),
    "the old page keeps the slot's reference": (
        "09-cow-fault", ("    old.unref()\n", ""), "in frame F2 (2 reference(s))"),
    "a copy of nothing": (
        "09-cow-fault", ("    cpu.store(window, data)\n", ""),
        "holds 'p3..end1' in frame F4 (1 reference(s)), writable on the reference; with yours, "
        "'p3' in frame F4"),
    "the hole keeps the old access": (
        "09-mprotect", HOLE_KEEPS_OLD_ACCESS,
        "the reference has the region m10 [0x1a23000, 0x1a24000) r--, yours does not (yours has "
        "m10 [0x1a23000, 0x1a24000) rw-)"),
    "the page table entries keep the old access": (
        "09-mprotect", ("            region.remap()\n", ""), "maps 'zero -' in the reference, "
                                                           "'zero r' in yours"),
    "a range over a hole changed anyway": (
        "09-mprotect", ("    if sum(region.range.intersect(wanted).size for region in regions) "
                        "!= wanted.size:", "    if False:"),
        "the reference returned ENOMEM, yours success"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_realistic_mistake_is_caught_at_its_step(mistake):
    grade_id, replace, feedback = MISTAKES[mistake]
    with pytest.raises(CheckFailed, match=re.escape(feedback)) as caught:
        EXERCISES[grade_id].check(*definitions(grade_id, replace), hidden=False)
    assert re.match(r"seed \d+, step \d+ of \d+, ", str(caught.value))


def test_the_first_difference_is_drawn_as_two_maps_but_the_grader_gets_one_line():
    exercise = EXERCISES["09-munmap"]
    verdict, drawing = judge_with_drawing(exercise, definitions("09-munmap", TAIL_OFF_BY_ONE))
    assert verdict.status == "wrong" and "\n" not in verdict.output and "<" not in verdict.output
    page = Feedback(exercise, verdict, drawing)._repr_html_()
    assert page.count("<svg") == 2 and "reference kernel" in page and "with your function" in page
    assert "Seed 0, step 4 of 25: munmap(0x1a18000, 0x5000)" in page
    # the one page where m2 is left in the reference and not in the learner's: one row a map
    assert page.count('fill="#ffd24d"/>') == 2
    assert "differs from the reference" in page and "a mapping with no region" in page


def test_a_passing_answer_and_a_crash_draw_nothing():
    exercise = EXERCISES["09-cow-fault"]
    verdict, drawing = judge_with_drawing(exercise, definitions("09-cow-fault"))
    assert verdict.status == "passed" and drawing == ""
    crash = ("    old = vmobject.physical_pages[page_index]\n",
             "    old = vmobject.physical_pages[page_index]\n    1 / 0\n")
    verdict, drawing = judge_with_drawing(exercise, definitions("09-cow-fault", crash))
    assert verdict.output == "crashed: ZeroDivisionError: division by zero" and drawing == ""


def test_the_record_carries_every_region_page_and_errno():
    transcript.start()
    try:
        transcript.take()
        EXERCISES["09-munmap"].check(*definitions("09-munmap"), hidden=False)
        munmap = transcript.take()
        EXERCISES["09-cow-fault"].check(*definitions("09-cow-fault"), hidden=False)
        cow = transcript.take()
    finally:
        transcript._recording = False
    case, result, regions, pages, free = munmap[3]
    assert case == "seed 0, step 4 of 25, munmap(0x1a18000, 0x5000)" and result == "success"
    assert regions[0] == [0x1A10000, 0x2000, "r-x", "text"] and len(regions) == 4
    assert len(pages) == 20 and pages[0] == "zero r" and pages[2] == "" and free > 3000
    assert {row[1] for row in munmap} >= {"success", "EINVAL", "EFAULT", "EPERM"}
    assert any(re.fullmatch(r"w\d+ rw", cell) for row in munmap for cell in row[3])
    case, result, processes, free = cow[2]
    assert case.startswith("seed 0, step 3 of 18, parent writes 'p3'")
    assert processes["child"][1] == ["old1..end1", "F2", 1, "r", True]
    assert processes["parent"][1] == ["p3..end1", "F4", 1, "rw", False]


def test_the_autograder_takes_the_points_of_the_exercise_in_error_and_no_other(tmp_path):
    """One student: munmap crashes, the CoW handler is right, mprotect splits wrongly. Graded
    by the autograder's own processes against the lesson's solutions alone."""
    solutions, student = tmp_path / "solutions", tmp_path / "class" / "student"
    solutions.mkdir()
    student.mkdir(parents=True)
    shutil.copy(NOTEBOOK, solutions / NOTEBOOK.name)
    notebook = nbformat.read(NOTEBOOK, 4)
    changes = {"09-munmap": ("    wanted = TRY(VirtualRange.expand_to_page_boundaries(",
                             "    1 / 0\n    wanted = TRY(VirtualRange.expand_to_page_boundaries("),
               "09-mprotect": HOLE_KEEPS_OLD_ACCESS}
    for cell in notebook.cells:
        change = changes.get(cell.metadata["nbgrader"]["grade_id"])
        if change:
            assert change[0] in cell.source
            cell.source = cell.source.replace(*change, 1)
    nbformat.write(notebook, student / NOTEBOOK.name)
    isolated = sandbox.unavailable() is None
    [result] = grade_class(tmp_path / "class", tmp_path / "out", solutions=solutions, jobs=1,
                           isolated=isolated)
    verdicts = {r.grade_id: (r.score, r.verdict.status, r.verdict.output)
                for r in result.exercises}
    assert verdicts["09-cow-fault"][:2] == (4, "passed")
    assert verdicts["09-munmap"][:2] == (0, "crashed")
    assert verdicts["09-munmap"][2].startswith("crashed: ZeroDivisionError")
    assert verdicts["09-mprotect"][:2] == (0, "wrong")
    assert re.match(r"wrong: seed 10\d\d, step \d+ of \d+, mprotect\(",
                    verdicts["09-mprotect"][2])
    assert result.score == 4 and result.max_score == 11
