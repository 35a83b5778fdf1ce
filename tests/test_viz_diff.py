"""The refactoring diff's model on known pairs, and its view against the model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.physical_zone import PhysicalZone
from refimpl.viz.diff_view import (DiffLine, DiffModel, DiffPair, DiffRow, DiffStats, Fold,
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
    assert model.shown_rows() == model.rows()  # nothing changed: the code is shown whole


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
    assert model.mode == "unified"  # the default
    unified = render_diff(model)
    assert unified.count('class="added"') == 1 and unified.count('class="header"') == 1
    assert unified.count('class="removed"') == 2 and "- -- gone</td>" in unified
    assert "+ if a &lt;= b:" in unified and "<script" not in unified and "http" not in unified
    # removed lines come before the added one, as in a unified diff
    assert unified.index("- if a &lt; b:") < unified.index("- -- gone") < \
        unified.index("+ if a &lt;= b:")
    model.set_mode("side by side")
    page = render_diff(model)
    assert page.count("background:#fff8c5") == 4  # number and text cells of both sides
    assert page.count('class="removed"') == 1 and "if a &lt;= b:" in page


def test_the_table_fits_the_notebook_width():
    long_line = "x = " + "+".join(["value"] * 40)  # 240 characters
    model = DiffModel({"x": text_pair(long_line + "\n", long_line + " + 1\n")})
    for mode in ("unified", "side by side"):
        model.set_mode(mode)
        page = render_diff(model)
        assert "table-layout:fixed;width:100%" in page and "overflow-x" not in page
        assert "white-space:pre;" not in page and "white-space:pre-wrap" in page


class Allocator:
    def untouched(self):
        return 1

    def changed(self, size):
        return size * 2

    def also_untouched(self):
        value = 2
        return value


class NewAllocator:
    def untouched(self):
        return 1

    def changed(self, size):
        return size * 4

    def also_untouched(self):
        value = 2
        return value


def test_only_the_functions_that_changed_are_shown():
    model = DiffModel({"c": source_pair(Allocator, NewAllocator)})
    shown = model.shown_rows()
    texts = [row.describe() if isinstance(row, Fold) else
             ((row.left or row.right).kind, (row.left or row.right).text) for row in shown]
    assert texts == [
        ("changed", "class Allocator:"), ("equal", "    def untouched(self):"),
        ("equal", "        return 1"), "⋯ 1 unchanged line",
        ("equal", "    def changed(self, size):"), ("changed", "        return size * 2"),
        "⋯ 4 unchanged lines: def also_untouched"]
    page = render_diff(model)
    assert "value = 2" not in page and "def also_untouched" in page and 'class="fold"' in page
    model.changed_only = False
    assert not any(isinstance(row, Fold) for row in model.shown_rows())
    assert "value = 2" in render_diff(model)


def test_text_that_is_not_python_keeps_context_around_changes():
    before = [f"line {n}" for n in range(20)]
    after = list(before)
    after[10] = "line ten"
    model = DiffModel({"x": text_pair("\n".join(before), "\n".join(after))})
    shown = model.shown_rows()
    assert shown[0] == Fold(8) and shown[-1] == Fold(7)
    assert [row.left.text for row in shown[1:-1]] == [f"line {n}" for n in range(8, 13)]


def test_the_view_redraws_on_pair_mode_and_the_unchanged_switch():
    view = RefactoringDiff({"c": source_pair(Allocator, NewAllocator),
                            "same": text_pair("a\n", "a\n")})
    assert view.chooser.layout.display != "none" and view.mode.value == "unified"
    assert "lines added: 2, removed: 2" in view.output.value
    assert "value = 2" not in view.output.value
    view.whole.value = True
    assert "value = 2" in view.output.value
    view.mode.value = "side by side"
    assert view.output.value == render_diff(view.model) and "<colgroup>" in view.output.value
    view.chooser.value = "same"
    assert "no differences" in view.output.value and view.model.selected == "same"


def test_one_pair_hides_the_chooser():
    view = RefactoringDiff({"only": text_pair("a\n", "b\n")}, mode="side by side")
    assert view.chooser.layout.display == "none"
    assert view.mode.value == "side by side" and ">a</td>" in view.output.value


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


@given(lines, lines)
def test_folding_never_hides_a_change_and_keeps_every_line_accounted_for(before, after):
    model = DiffModel({"x": text_pair("".join(line + "\n" for line in before),
                                      "".join(line + "\n" for line in after))})
    shown = model.shown_rows()
    kept = [row for row in shown if not isinstance(row, Fold)]
    assert [row for row in model.rows() if (row.left or row.right).kind != "equal"] == [
        row for row in kept if (row.left or row.right).kind != "equal"]
    assert len(kept) + sum(row.count for row in shown if isinstance(row, Fold)) == \
        len(model.rows())


def test_a_context_of_lines_instead_of_whole_functions():
    model = DiffModel({"c": source_pair(Allocator, NewAllocator)}, context=0)
    shown = model.shown_rows()
    assert [row.describe() if isinstance(row, Fold) else (row.left or row.right).text
            for row in shown] == [
        "class Allocator:", "⋯ 4 unchanged lines: def untouched, def changed",
        "        return size * 2", "⋯ 4 unchanged lines: def also_untouched"]
    with pytest.raises(ValueError, match="context"):
        DiffModel({"c": text_pair("a", "b")}, context=-1)
