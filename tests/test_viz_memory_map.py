"""The physical-memory map's model against kernel state, and its view against the model."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MayReturnToFreeList, MemoryManager, PageDirectory, PagePurpose
from refimpl.kernel.invariants import KernelSnapshot
from refimpl.viz.memory_map import (COLOURS, Folded, FrameCell, PhysicalMemoryMap,
                                    PhysicalMemoryMapModel, parse_frame, render_memory_map)

PURPOSES = [purpose.value for purpose in PagePurpose]


def boot(ram_size: int = 16 * MiB) -> MemoryManager:
    return MemoryManager(Machine(X86_64, ram_size=ram_size))


def live_purposes(mm: MemoryManager) -> dict[str, int]:
    return dict(Counter(page.purpose.value for page in mm.live_physical_pages()))


def test_a_booted_machine_frame_by_frame():
    model = PhysicalMemoryMapModel(boot())
    # 0..0x1ff low memory; 0x200..0x20a the image; 13 zones of 256; a 245-frame tail; 32 page
    # tables made up front for the kmalloc range.
    assert model.counts() == {"reserved": 512, "unusable": 245, "free": 3295, "kernel image": 5,
                              "page directory": 4, "page table": 34, "shared zero page": 1}
    cells = model.frames()
    assert len(cells) == 4096 and [cell.frame for cell in cells] == list(range(4096))
    assert cells[0x1FF] == FrameCell(0x1FF, 0x1FF000, "reserved", None, COLOURS["reserved"])
    assert cells[0x200] == FrameCell(0x200, 0x200000, "page directory", 1,
                                     COLOURS["page directory"], never_returns=True)
    assert [cells[frame].label for frame in (0x20A, 0x20B, 0xF0A, 0xF0B)] == [
        "kernel image", "free", "free", "unusable"]


def test_counts_and_ref_counts_follow_the_kernel():
    mm = boot()
    users = [MUST(mm.allocate_physical_page(purpose=PagePurpose.USER)) for _ in range(3)]
    users[0].ref()
    users[0].ref()
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    model = PhysicalMemoryMapModel(mm)
    counts = model.counts()
    assert counts["user"] == 3 and counts["free"] == mm.free_physical_pages()
    assert {label: counts[label] for label in PURPOSES if label in counts} == live_purposes(mm)
    assert sum(counts.values()) == 4096
    cells = model.frames()
    assert [cells[page.paddr() // 4096].ref_count for page in users] == [3, 1, 1]
    for page in directory.owned_pages():
        cell = cells[page.paddr() // 4096]
        assert (cell.label, cell.ref_count) == ("page directory", page.ref_count())


def test_refresh_shows_a_freed_page_as_free():
    mm = boot()
    page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
    frame = page.paddr() // 4096
    model = PhysicalMemoryMapModel(mm)
    assert model.frames()[frame].label == "user"
    page.unref()
    assert model.frames()[frame].label == "user"  # what was drawn stays until a refresh
    model.refresh()
    assert model.frames()[frame] == FrameCell(frame, frame * 4096, "free", None, COLOURS["free"])
    assert model.counts()["free"] == 3295


def test_a_page_that_never_returns_leaks_when_its_last_reference_goes():
    mm = boot()
    page = MUST(mm.allocate_physical_page(purpose=PagePurpose.KERNEL))
    page.may_return_to_freelist = MayReturnToFreeList.NO
    frame = page.paddr() // 4096
    page.unref()
    model = PhysicalMemoryMapModel(mm)
    assert model.frames()[frame].label == "leaked" and model.counts()["leaked"] == 1
    model.select(frame)
    assert "no PhysicalPage holds it" in model.details()


def test_selecting_by_frame_number_and_by_address():
    model = PhysicalMemoryMapModel(boot())
    model.set_selected_text("0x203")
    assert model.selected == 0x203 and model.message == ""
    assert model.details() == ("frame 0x203 at P0x203000: page directory, 1 reference; "
                               "never returns to the free list")
    model.set_selected_text(" P0x20b_123 ")
    assert model.selected == 0x20B
    assert model.details() == ("frame 0x20b at P0x20b000: free (in a free block of the buddy "
                               "allocator)")
    model.set_selected_text("523")
    assert model.selected == 0x20B
    model.set_selected_text("0xfff")
    assert model.details().startswith("frame 0xfff at P0xfff000: unusable (the tail of RAM")
    model.set_selected_text("")
    assert model.selected is None and model.message == "" and model.details() == ""


@pytest.mark.parametrize("text, message", [
    ("banana", "'banana' is neither a frame number (4451, 0x1163) nor a physical address"),
    ("0x1000", "frame 0x1000 is outside RAM (frames 0x0..0xfff)"),
    ("0x20b000", "frame 0x20b000 is outside RAM (frames 0x0..0xfff); for the physical "
                 "address, type P0x20b000"),
    ("P0x1000000", "frame 0x1000 is outside RAM"),
    ("P0xZZ", "'0xZZ' is not a hexadecimal address"),
    ("V0x2000200000", "is a virtual address; this map shows physical frames"),
])
def test_bad_input_leaves_a_message_and_no_selection(text, message):
    model = PhysicalMemoryMapModel(boot())
    model.set_selected_text("0x203")
    model.set_selected_text(text)
    assert message in model.message
    assert model.selected is None and model.details() == ""
    model.set_selected_text("0x203")
    assert model.message == "" and model.selected == 0x203


def test_parse_frame():
    assert parse_frame("0x1163") == 0x1163
    assert parse_frame("4451") == 4451
    assert parse_frame("p1163fff") == 0x1163
    with pytest.raises(ValueError):
        parse_frame("")


def test_a_big_machine_is_shown_one_window_at_a_time():
    model = PhysicalMemoryMapModel(boot(64 * MiB))
    assert (model.first_frame, model.frame_count, model.total_frames) == (0, 4096, 16384)
    model.set_selected_text("P0x3001000")
    assert model.first_frame == 0x3000 and model.selected == 0x3001
    assert model.frames()[1].frame == 0x3001 and model.details().startswith("frame 0x3001")
    model.select(0x1234)
    assert model.first_frame == 0x1000
    assert len(render_memory_map(model)) < 20_000


def test_a_small_window_moves_by_its_own_size():
    model = PhysicalMemoryMapModel(boot(), first_frame=0x200, frame_count=64)
    assert [cell.frame for cell in model.frames()] == list(range(0x200, 0x240))
    model.select(0x250)
    assert (model.first_frame, len(model.frames())) == (0x240, 64)
    with pytest.raises(ValueError, match="outside RAM"):
        model.select(0x1000)


@pytest.mark.parametrize("first_frame, frame_count", [(0, 5000), (0, 0), (0xFFF, 2), (-1, 10)])
def test_windows_must_lie_in_ram(first_frame, frame_count):
    with pytest.raises(ValueError):
        PhysicalMemoryMapModel(boot(), first_frame, frame_count)


def test_rows_with_nothing_to_see_are_folded():
    model = PhysicalMemoryMapModel(boot())
    rows = model.grid_rows(64)
    assert [row.describe() if isinstance(row, Folded) else row[0].frame for row in rows] == [
        "frames 0x0..0x1ff: 512 reserved", 0x200, "frames 0x240..0x2bf: 128 free", 0x2C0, 0x300,
        "frames 0x340..0xfff: 3019 free, 245 unusable"]
    model.select(0x800)  # a selected frame is never folded away
    assert 0x800 in [row[0].frame for row in model.grid_rows(64) if not isinstance(row, Folded)]
    page = render_memory_map(model)
    assert page.count('class="folded"') == 4 and "3019 free" not in page
    assert page.index("legend") < page.index("<svg")  # the legend comes before the grid


def test_page_directories_and_tables_have_clearly_different_colours():
    def rgb(colour):
        return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    directory, table = rgb(COLOURS["page directory"]), rgb(COLOURS["page table"])
    assert sum(abs(a - b) for a, b in zip(directory, table)) > 300
    assert len(set(COLOURS.values())) == len(COLOURS)


def test_reference_counts_are_drawn():
    mm = boot()
    page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
    page.ref()
    page.ref()
    whole = render_memory_map(PhysicalMemoryMapModel(mm))
    assert whole.count("<circle") == 1 and "3 references</title></circle>" in whole
    frame = page.paddr() // 4096
    zoomed = render_memory_map(PhysicalMemoryMapModel(mm, frame - frame % 32, 32))
    assert zoomed.count(">3</text>") == 1 and "32 per row" in zoomed


def test_the_map_changes_nothing():
    mm = boot()
    MUST(PageDirectory.try_create_for_userspace(mm))
    before = (KernelSnapshot.take(mm), Counter(mm.allocations.calls),
              mm.machine.memory.read(0, 16 * MiB))
    view = PhysicalMemoryMap(mm, selected="0x203")
    view.refresh_button.click()
    view.selection.value = "P0xf00000"
    assert before == (KernelSnapshot.take(mm), Counter(mm.allocations.calls),
                      mm.machine.memory.read(0, 16 * MiB))


def test_the_view_reacts_to_the_text_box_and_the_refresh_button():
    mm = boot()
    view = PhysicalMemoryMap(mm)
    assert 'class="selected"' not in view.output.value and "type a frame number" in \
        view.output.value
    assert "free: 3295" in view.output.value and len(view.output.value) < 20_000
    view.selection.value = "0x203"
    assert view.output.value.count('class="selected"') == 1
    # frame 0x203: column 3 of 12-pixel cells, in the first row drawn after the fold of 0..0x1ff
    assert 'x="36" y="16"' in view.output.value
    assert "frame 0x203 at P0x203000: page directory" in view.output.value
    view.selection.value = "banana"
    assert 'class="selected"' not in view.output.value
    assert "neither a frame number" in view.output.value and "Traceback" not in view.output.value
    page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
    assert "free: 3295" in view.output.value
    view.refresh_button.click()
    assert "free: 3294" in view.output.value and "user: 1" in view.output.value
    page.unref()


@settings(max_examples=20)
@given(st.lists(st.tuples(st.sampled_from(list(PagePurpose)), st.integers(0, 2)), max_size=12),
       st.data())
def test_the_map_agrees_with_the_kernel_after_any_allocations(allocations, data):
    mm = boot()
    pages = []
    for purpose, extra_refs in allocations:
        page = MUST(mm.allocate_physical_page(purpose=purpose))
        for _ in range(extra_refs):
            page.ref()
        pages.append(page)
    model = PhysicalMemoryMapModel(mm)
    for page in data.draw(st.lists(st.sampled_from(pages), unique=True)) if pages else []:
        for _ in range(page.ref_count()):
            page.unref()
    model.refresh()
    counts = model.counts()
    assert counts["free"] == mm.free_physical_pages()
    assert {label: counts[label] for label in PURPOSES if label in counts} == live_purposes(mm)
    assert {cell.frame: cell.ref_count for cell in model.frames() if cell.ref_count} == {
        page.paddr() // 4096: page.ref_count() for page in mm.live_physical_pages()}
