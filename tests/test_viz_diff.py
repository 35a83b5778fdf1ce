"""The refactoring diff's model on known pairs, and its view against the model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.physical_zone import PhysicalZone
from refimpl.viz.diff_view import (DiffLine, DiffModel, DiffPair, DiffRow, DiffStats,
                                   RefactoringDiff, render_diff, source_pair, text_pair)


def total_before(values):
    result = 0
    for value in values:
        result += value
    return result


def total_after(values):
    """Sum of `values`."""
    result = 0
    for value in values:
        result = result + value
    return result


class Holder:
    def method(self):
        return 1


def test_source_pair_reads_and_labels_our_own_code():
    pair = source_pair(total_before, total_after)
    assert pair.before.startswith("def total_before(values):\n    result = 0\n")
    assert (pair.before_label, pair.after_label) == (f"{__name__}:total_before",
                                                     f"{__name__}:total_after")
    method = source_pair(Holder.method, MemoryManager.ensure_pte)
    assert method.before == "def method(self):\n    return 1\n"  # dedented out of its class
    assert method.after.startswith("@fallible\ndef ensure_pte(self, directory")
    assert method.after_label == "refimpl.kernel.memory_manager:MemoryManager.ensure_pte"
    import refimpl.kernel.physical_zone as module
    assert source_pair(module, PhysicalZone).before_label == "refimpl.kernel.physical_zone"


def test_a_known_pair_gives_known_rows_and_stats():
    model = DiffModel({"total": source_pair(total_before, total_after)})
    rows = model.rows()
    assert [(row.left and row.left.number, row.right and row.right.number,
             (row.left or row.right).kind) for row in rows] == [
        (1, 1, "changed"), (None, 2, "added"), (2, 3, "equal"), (3, 4, "equal"),
        (4, 5, "changed"), (5, 6, "equal")]
    assert rows[1] == DiffRow(None, DiffLine(2, '    """Sum of `values`."""', "added"))
    assert rows[4] == DiffRow(DiffLine(4, "        result += value", "changed"),
                              DiffLine(5, "        result = result + value", "changed"))
    assert model.stats() == DiffStats(added=3, removed=2)
    assert model.unified().splitlines()[:4] == [
        f"--- {__name__}:total_before", f"+++ {__name__}:total_after", "@@ -1,5 +1,6 @@",
        "-def total_before(values):"]


def test_a_replaced_block_of_unequal_sizes_ends_with_removed_lines():
    model = DiffModel({"x": text_pair("a\nb\nc\nz\n", "A\nz\n", ("old", "new"))})
    assert [((row.left or row.right).kind, row.left and row.left.text,
             row.right and row.right.text) for row in model.rows()] == [
        ("changed", "a", "A"), ("removed", "b", None), ("removed", "c", None),
        ("equal", "z", "z")]
    assert model.stats() == DiffStats(added=1, removed=3)
    assert model.pair() == DiffPair("a\nb\nc\nz\n", "A\nz\n", "old", "new")


def test_identical_sources_have_no_changes():
    model = DiffModel({"same": source_pair(total_before, total_before)})
    assert {row.left.kind for row in model.rows()} == {"equal"}
    assert [(row.left.number, row.right.number) for row in model.rows()] == [(n, n) for n in
                                                                            range(1, 6)]
    assert model.stats() == DiffStats(0, 0) and model.unified() == ""
    assert "no differences" in render_diff(model)


def test_selection_and_mode_are_checked():
    model = DiffModel({"a": text_pair("x", "y"), "b": text_pair("x", "x")})
    assert model.names() == ["a", "b"] and model.selected == "a"
    model.select("b")
    assert model.stats() == DiffStats(0, 0)
    with pytest.raises(ValueError, match="no pair named 'c'"):
        model.select("c")
    with pytest.raises(ValueError, match="mode is one of"):
        model.set_mode("split")
    with pytest.raises(ValueError, match="at least one pair"):
        DiffModel({})


def test_the_html_tints_lines_by_kind_and_escapes_them():
    model = DiffModel({"x": text_pair("keep\nif a < b:\n-- gone\n", "keep\nif a <= b:\n")})
    page = render_diff(model)
    assert page.count("background:#fff8c5") == 4  # number and text cells of both sides
    assert page.count('class="removed" style="padding:0 6px;white-space:pre;vertical-align:top;'
                      'background:#ffebe9"') == 1
    assert "if a &lt;= b:" in page and "<script" not in page and "http" not in page
    model.set_mode("unified")
    unified = render_diff(model)
    assert unified.count('class="added"') == 1 and unified.count('class="header"') == 2
    assert unified.count('class="removed"') == 2 and ">--- gone</td>" in unified
    assert "+if a &lt;= b:" in unified


def test_the_view_redraws_on_pair_and_mode():
    view = RefactoringDiff({"total": source_pair(total_before, total_after),
                            "same": text_pair("a\n", "a\n")})
    assert view.chooser.layout.display != "none"
    side_by_side = view.output.value
    assert "lines added: 3, removed: 2" in side_by_side and "@@" not in side_by_side
    view.mode.value = "unified"
    assert "@@ -1,5 +1,6 @@" in view.output.value
    view.chooser.value = "same"
    assert "no differences" in view.output.value and view.model.selected == "same"
    view.mode.value = "side by side"
    assert view.output.value == render_diff(view.model) and "@@" not in view.output.value


def test_one_pair_hides_the_chooser():
    view = RefactoringDiff({"only": text_pair("a\n", "b\n")}, mode="unified")
    assert view.chooser.layout.display == "none"
    assert view.mode.value == "unified" and "-a" in view.output.value


lines = st.lists(st.sampled_from(["a", "b", "c", "d", ""]), max_size=12)


@given(lines, lines)
def test_rows_rebuild_both_sides_and_agree_with_the_unified_diff(before, after):
    model = DiffModel({"x": text_pair("".join(line + "\n" for line in before),
                                      "".join(line + "\n" for line in after))})
    rows = model.rows()
    left = [row.left for row in rows if row.left]
    right = [row.right for row in rows if row.right]
    assert [line.text for line in left] == before and [line.text for line in right] == after
    assert [line.number for line in left] == list(range(1, len(before) + 1))
    assert [line.number for line in right] == list(range(1, len(after) + 1))
    assert all(row.left.text == row.right.text for row in rows
               if row.left and row.left.kind == "equal")
    body = model.unified().splitlines()[2:]
    stats = model.stats()
    assert stats == DiffStats(sum(line.startswith("+") for line in body),
                              sum(line.startswith("-") for line in body))
