"""The exercises: the solutions pass the hidden checks, and realistic mistakes are caught with
feedback that points at them."""

import re
from pathlib import Path

import nbformat
import pytest

from refimpl.grading import EXERCISES, CheckFailed, practice

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def solution_cells():
    """grade_id -> (notebook, source) for every solution cell."""
    cells = {}
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        for cell in nbformat.read(path, 4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution"):
                cells[meta["grade_id"]] = (path, cell.source)
    return cells


def setup_source(path):
    return "\n".join(cell.source for cell in nbformat.read(path, 4).cells
                     if cell.cell_type == "code" and not cell.metadata["nbgrader"]["solution"]
                     and not cell.metadata["nbgrader"]["grade"])


def definitions(grade_id, replace=None):
    """Run the notebook's set-up and solution cells (with one mutation) and return the names
    the exercise checks."""
    cells = solution_cells()
    path, _ = cells[grade_id]
    namespace = {}
    exec(setup_source(path), namespace)
    for other_id, (other_path, source) in cells.items():
        if other_path == path:
            if other_id == grade_id and replace:
                assert replace[0] in source, f"mutation {replace[0]!r} not in {grade_id}"
                source = source.replace(*replace)
            exec(source, namespace)
    return [namespace[name] for name in EXERCISES[grade_id].names]


def test_every_exercise_has_a_solution_cell_and_a_check_cell():
    cells = solution_cells()
    assert set(cells) == set(EXERCISES)
    lessons = {grade_id[:2] for grade_id in EXERCISES}
    assert lessons == {path.name[:2] for path in SOLUTIONS.glob("*.ipynb")}
    for lesson in lessons:
        assert sum(1 for g in EXERCISES if g.startswith(lesson)) >= 3


@pytest.mark.parametrize("grade_id", sorted(EXERCISES))
def test_the_solutions_pass_the_hidden_checks(grade_id):
    exercise = EXERCISES[grade_id]
    assert exercise.check(*definitions(grade_id), hidden=True).startswith("passed")


MISTAKES = {
    "00-split-address": (("shift -= bits", "shift -= bits - 1"), "index (level"),
    "00-decode-entry": (("& ((1 << fmt.frame_bits) - 1)", ""), "the frame is"),
    "00-walk": (("table = fmt.decode_frame(entry) << fmt.page_shift",
                 "table = fmt.decode_frame(entry)"), "expected"),
    "00-error-code": (("(2 if write else 0)", "(8 if write else 0)"), "error code is"),
    "01-carve": (("if piece.size > 0", "if True"), "expected ["),
    "01-rename": (('r"\\b(" + ', 'r"(" + '), "expected 'UsedMemory"),
    "01-first-fit": (("needed = size + 2 * PAGE_SIZE + alignment", "needed = size + 2 * PAGE_SIZE"),
                     "expected"),
    "02-kresult-to-error": (("Errno(-kresult.error())", "Errno(kresult.error())"),
                            "raised ValueError"),
    "02-try": (("region = TRY(space.allocate_region", "region = MUST(space.allocate_region"),
               "raised KernelPanic: MUST failed"),
    "02-return-value": (("return -result.error().code()", "return result.error().code()"),
                        "user space must see -"),
    "03-ensure-pte": (("pde.set_global(", "page_table.ref(); pde.set_global("),
                      "2 reference(s) but 1 PDE(s)"),
    "03-release-pte": (("mm.get_physical_page_entry(pde.page_table_base()).unref()", "pass"),
                       "is live but no PDE points at it"),
    "03-find-reentrancy": (("return index", "return index - 1"), "the window moves at step"),
    "04-identity-map": (("| Region.Access.EXECUTE", ""), "faults"),
    "04-unmap-everywhere": (("region.destroy()", "region.unmap(should_flush_tlb=False); "
                             "region.destroy()"),
                            "through a stale TLB entry"),
    "04-boot-aps": (("    region.destroy()\n", ""), "still translates"),
    "05-find-stale": (("if step.cache_region and step.live.get(step.cache_region) != "
                       "step.cache_range:", "if index and step.call == 'exec':"),
                      "goes stale at step 12 (exec); you said 6"),
    "05-take-region": (("        space.region_lookup_cache.region = 0\n", "        pass\n"),
                       "a region you took out of the tree"),
    "05-hit-rate": (("            regions.add(wanted)\n            continue\n",
                     "            regions.add(wanted)\n"), "expected (hits, lookups)"),
    "07-place-anywhere": (("    with tree.get_lock():\n        found = tree._allocate_range_anywhere(size)\n",
                           "    found = tree._allocate_range_anywhere(size)\n    with tree.get_lock():\n"),
                          "the find ran without the tree's lock"),
    "07-collides": (("return max(a_find, b_find) < min(a_insert, b_insert)",
                     "return b_find < a_insert"), "expected False, got True"),
    "07-aslr-lost": (("if base - address >= size + PAGE_SIZE:", "if base - address >= size:"),
                     "expected ["),
}


@pytest.mark.parametrize("grade_id", sorted(MISTAKES))
def test_a_realistic_mistake_gets_feedback_that_points_at_it(grade_id):
    replace, feedback = MISTAKES[grade_id]
    with pytest.raises(CheckFailed, match=re.escape(feedback)):
        EXERCISES[grade_id].check(*definitions(grade_id, replace), hidden=False)


def test_not_attempted_propagates():
    def stub(*args):
        raise NotImplementedError()
    with pytest.raises(NotImplementedError):
        EXERCISES["00-walk"].check(stub)


def test_practice_gives_fresh_reproducible_problems():
    first, again, other = (practice("00-walk", 7), practice("00-walk", 7), practice("00-walk", 8))
    assert str(first) == str(again) and first.answer() == again.answer()
    assert str(first) != str(other)
    fit = practice("01-first-fit", 3)
    assert "Free ranges" in repr(fit) and fit.answer() == practice("01-first-fit", 3).answer()
    with pytest.raises(ValueError, match="no practice generator"):
        practice("99-nothing", 1)


def test_a_walk_problem_shows_the_whole_tiny_machine_and_answers_in_hex():
    problem = practice("00-walk", 7)
    text = repr(problem)
    assert "CR3 = 0x10" in text and "bit 7 present" in text
    assert sum(line.startswith("frame 0x") for line in text.splitlines()) == 32
    assert "page table" in problem._repr_html_() and "<table" in problem._repr_html_()
    answer = problem.answer()
    asked = re.search(r"translate (.*?): to which physical address", text).group(1)
    assert set(answer.value) == {int(address, 16) for address in asked.split(", ")}
    assert re.fullmatch(r"(0x[0-9a-f]{3} -> (0x[0-9a-f]{3}|fault)(, )?)+", repr(answer))


@pytest.mark.parametrize("grade_id", ["00-split-address", "00-decode-entry"])
def test_practice_uses_only_the_formats_the_lessons_teach(grade_id):
    for seed in range(40):
        statement = str(practice(grade_id, seed))
        assert "x86_64" in statement or "tiny" in statement
        assert not re.search(r"i386|pae|ostep", statement, re.IGNORECASE)
        numbers = re.findall(r"\b[0-9][0-9a-fx]*", repr(practice(grade_id, seed).answer()))
        assert numbers and all(n.startswith("0x") for n in numbers), "hex, like the question"


def test_first_fit_practice_answers_with_a_range_or_enomem():
    answers = {repr(practice("01-first-fit", seed).answer()) for seed in range(40)}
    assert all(re.fullmatch(r"\[0x[0-9a-f]+, 0x[0-9a-f]+\)|ENOMEM", a) for a in answers)
