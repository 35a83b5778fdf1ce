"""The address-space map (one patch per region, labels, gaps, legend) and the page-fault call
chain (from the MMU to the VMObject's handler, the PTE before and after)."""

import matplotlib
import pytest

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MemoryManager
from refimpl.kernel.process import Process, ProgramImage
from refimpl.kernel.procfs import layout
from refimpl.kernel.program_trace import CHILD, example_trace, run_trace
from refimpl.viz.address_space_map import (drawn_pages, human_size, page_fault_call_chain,
                                           plot_address_space, plot_two_layouts)

matplotlib.use("Agg")
PAGE = 4096


@pytest.fixture(scope="module")
def outcomes():
    return run_trace(ProgramImage.example(), example_trace())


def region_patches(ax):
    return [patch for patch in ax.patches if (patch.get_gid() or "").startswith("region ")]


def test_the_map_draws_one_patch_per_region_with_its_label(outcomes):
    rows = outcomes[7].layout  # after munmap and mprotect: the heap in four pieces
    figure = plot_address_space(rows, "after mprotect")
    ax, = figure.axes
    assert len(region_patches(ax)) == len(ax.patches) == len(rows) == 11
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels[0] == f"heap  rw-\n{rows[0].base:#x}, 4 KiB"
    assert sum(label.startswith("heap  ") for label in labels) == 4
    assert any(label.startswith("Stack (Main thread)  rw-") for label in labels)
    assert ax.get_title() == "after mprotect" and "page of the region" in ax.get_xlabel()
    texts = [text.get_text() for text in ax.texts]
    assert "⋮ 4 KiB unmapped" in texts  # the hole munmap punched
    assert "…224…" in texts  # the stack, cut
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["region r--", "region r-x", "region rw-", "resident, private (#)",
                      "resident, copy-on-write (c)", "resident, shared (s)",
                      "not resident (.)"]
    figure.canvas.draw()


def test_page_cells_follow_the_layout(outcomes):
    rows = outcomes[8].layout  # just after fork
    figure = plot_address_space(rows, "parent after fork")
    counts = [len(collection.get_paths()) for collection in figure.axes[0].collections]
    drawn = "".join(state for row in rows for _, _, state in drawn_pages(row.pages))
    assert counts == [drawn.count(state) for state in "#cs."]
    assert drawn.count("c") == 7


def test_the_highlighted_region_is_outlined_in_red_in_both_maps(outcomes):
    parent, child = outcomes[11].layouts["parent"], outcomes[11].layouts[CHILD]
    data = next(row for row in parent if row.name.endswith("(data-rw)"))
    figure = plot_two_layouts(parent, child, ("parent", "child"), first_difference=data.base)
    assert [ax.get_title() for ax in figure.axes] == ["parent", "child"]
    for ax in figure.axes:
        red = [patch for patch in region_patches(ax)
               if matplotlib.colors.to_hex(patch.get_edgecolor()) == "#d00000"]
        assert [patch.get_gid() for patch in red] == [f"region {data.base:#x}"]
    assert figure.legends and figure._suptitle.get_text() == f"first difference at {data.base:#x}"
    figure.canvas.draw()


def test_long_regions_are_cut_and_sizes_read_well():
    cells = drawn_pages("." * 255 + "#")
    assert len(cells) == 32 and cells[15] == (15, 15, ".") and cells[16] == (18, 240, ".")
    assert cells[-1] == (33, 255, "#")
    assert drawn_pages("#.c") == [(0, 0, "#"), (1, 1, "."), (2, 2, "c")]
    assert [human_size(size) for size in (PAGE, 12 * PAGE, 1 << 20, 3 << 29, 700)] == \
        ["4 KiB", "48 KiB", "1 MiB", "1.5 GiB", "700 B"]


def exec_example():
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    return MUST(Process.try_exec(mm, ProgramImage.example()))


def called(events):
    return [event.function for event in events if event.kind == "call"]


def test_a_zero_fault_goes_from_the_mmu_to_the_vmobject_and_back():
    process = exec_example()
    bss = process.address_of("data") + PAGE
    events = page_fault_call_chain(process, bss)
    kernel = [name for name in called(events) if not name.startswith("CPU.")]
    assert kernel == ["_access_page", "AddressSpace.handle_page_fault",
                      "AddressSpace.find_region_containing", "Region.handle_fault",
                      "AnonymousVMObject.handle_zero_fault",
                      "MemoryManager.allocate_physical_page", "Region.remap_vmobject_page"]
    assert "CPU.physical_address" in called(events)
    assert events[0].probe.startswith("PTE: present, read-only")  # the shared zero page
    assert events[-1].probe.startswith("PTE: present, writable")
    assert process.faults["demand zero"] == 4  # three at exec, and this one
    assert MUST(process.read(bss, 1)) == b"!"


def test_a_cow_fault_calls_the_cow_handler_and_a_read_calls_no_handler():
    process = exec_example()
    MUST(process.fork())
    events = page_fault_call_chain(process, process.address_of("data"))
    assert "AnonymousVMObject.handle_cow_fault" in called(events)
    assert "AnonymousVMObject.handle_zero_fault" not in called(events)
    quiet = page_fault_call_chain(process, process.address_of("data") + 2 * PAGE, write=False)
    assert "AddressSpace.handle_page_fault" not in called(quiet)
    process.exit()
    with pytest.raises(ValueError, match="exited"):
        page_fault_call_chain(process, 0)


def test_layout_of_a_fresh_process_draws():
    figure = plot_address_space(layout(exec_example().space), "after exec")
    assert len(region_patches(figure.axes[0])) == 7
    figure.canvas.draw()
