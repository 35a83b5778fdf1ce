"""A map of one process's address space, and the call chain of one of its page faults.

`plot_address_space` draws a Layout (refimpl.kernel.procfs) one row per region, in address
order: a bar coloured by access, one cell per page marked by residency ("#" private, "c"
copy-on-write, "s" shared, "." not resident). A user address space is sparse (regions a few
pages long, hundreds of GiB apart), so the map is not to scale: each gap is a thin row that
says how large it is, and a region of more than `MAX_CELLS` pages shows its first and last
`EDGE_CELLS` pages around a note of how many are left out.

`page_fault_call_chain` records the calls one user access makes when it faults, from the MMU's
translation raising #PF to the VMObject's handler, as refimpl.viz.call_chain events. The real
functions each step stands for, in SerenityOS at f0f97e1db028050a5014a6950a4a5c43bd424aff:
- `CPU.store`, `CPU.physical_address`: the instruction and the MMU's translation, which raises
  the page fault; a fault enters the kernel at `page_fault_handler`
  (Kernel/Arch/x86/common/Interrupts.cpp#L252), which calls `MM.handle_page_fault` (#L306).
- `_access_page` (refimpl.kernel.user_access): that trap path and the retry of the instruction;
  its call of AddressSpace.handle_page_fault is `MemoryManager::handle_page_fault`
  (Kernel/Memory/MemoryManager.cpp#L737), which finds the region (`find_region_from_vaddr`,
  #L726, here `AddressSpace.find_region_containing`) and calls its `handle_fault` (#L767).
- `Region.handle_fault`: `Region::handle_fault` (Kernel/Memory/Region.cpp#L358), which sends a
  write to the zero page to `handle_zero_fault` (#L399, #L407) and a CoW write to
  `handle_cow_fault` (#L401, #L449).
- `AnonymousVMObject.handle_zero_fault`: the allocation in `Region::handle_zero_fault`
  (Region.cpp#L433, `MM.allocate_user_physical_page`); `AnonymousVMObject.handle_cow_fault`:
  `AnonymousVMObject::handle_cow_fault` (Kernel/Memory/AnonymousVMObject.cpp#L299; no copy if
  the page's ref count is 1, #L317).
- `Region.remap_vmobject_page`: `Region::remap_vmobject_page` (Region.cpp#L257).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.collections import PatchCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import Patch, Rectangle

from refimpl.hw import trace_walk
from refimpl.hw.paging import PTEFlags
from refimpl.kernel.procfs import COPY_ON_WRITE, NOT_RESIDENT, PRIVATE, SHARED, LayoutRow
from refimpl.viz.call_chain import ChainEvent, record_call_chain
from refimpl.viz.figures import LessonFigure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from refimpl.kernel.process import Process

MAX_CELLS = 48
"""A region with more pages is drawn cut: its first and last EDGE_CELLS pages."""
EDGE_CELLS = 16
ACCESS_COLOURS = {"r-x": "#e69f00", "r--": "#56b4e9", "rw-": "#009e73", "---": "#bbbbbb"}
"""Okabe-Ito colours per access; any other access is drawn purple."""
OTHER_ACCESS_COLOUR = "#cc79a7"
PAGE_STYLES = {
    PRIVATE: ("#1a1a1a", "resident, private (#)"),
    COPY_ON_WRITE: ("#d55e00", "resident, copy-on-write (c)"),
    SHARED: ("#0072b2", "resident, shared (s)"),
    NOT_RESIDENT: ("white", "not resident (.)"),
}
REGION_HEIGHT, GAP_HEIGHT = 0.8, 0.45
FAULT_CHAIN_FUNCTIONS = (
    "CPU.store", "CPU.load", "CPU.physical_address", "_access_page",
    "AddressSpace.handle_page_fault", "AddressSpace.find_region_containing", "Region.handle_fault",
    "AnonymousVMObject.handle_zero_fault", "AnonymousVMObject.handle_cow_fault",
    "MemoryManager.allocate_physical_page", "Region.remap_vmobject_page")


def human_size(size: int) -> str:
    """4096 -> "4 KiB", 3 * 2**30 -> "3 GiB", with one decimal where it helps."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value >= 100 or value == int(value) \
                else f"{value:.1f} {unit}"
    return f"{size} B"


def drawn_pages(pages: str) -> list[tuple[int, int, str]]:
    """(cell, page index, state) of the pages drawn for a region: all of them, or the first
    and last EDGE_CELLS with two empty cells between for the note."""
    if len(pages) <= MAX_CELLS:
        return [(index, index, state) for index, state in enumerate(pages)]
    tail = len(pages) - EDGE_CELLS
    return [(index, index, pages[index]) for index in range(EDGE_CELLS)] + \
        [(EDGE_CELLS + 2 + index - tail, index, pages[index]) for index in range(tail, len(pages))]


def _rows(layout: list[LayoutRow]) -> list[tuple[float, LayoutRow | int]]:
    """(y, region or gap size) from the top: a region row, and a thin row for each gap."""
    rows, y = [], 0.0
    for previous, row in zip([None, *layout], layout):
        if previous is not None and row.base > previous.end:
            rows.append((y + GAP_HEIGHT / 2, row.base - previous.end))
            y += GAP_HEIGHT
        rows.append((y + REGION_HEIGHT / 2 + 0.1, row))
        y += REGION_HEIGHT + 0.2
    return rows


def _height(layouts: list[list[LayoutRow]]) -> float:
    """Inches for the tallest of `layouts`: room for a two-line label per region."""
    return 1.5 + 0.45 * max((rows[-1][0] + 0.5 for rows in map(_rows, layouts) if rows),
                            default=1)


def _cells_wide(layout: list[LayoutRow]) -> int:
    return max([drawn_pages(row.pages)[-1][0] + 1 for row in layout] + [8])


def plot_address_space(layout: list[LayoutRow], title: str, ax: Axes | None = None,
                       highlight: int | None = None, legend: bool = True):
    """Draw `layout` on `ax` (or on a new figure); the region holding the address `highlight`,
    if any, is outlined in red. Returns the figure."""
    if ax is None:
        figure = LessonFigure(figsize=(12.8, _height([layout])), layout="constrained")
        ax = figure.add_subplot()
    cells: dict[str, list[Rectangle]] = {state: [] for state in PAGE_STYLES}
    rows = _rows(layout)
    for y, item in rows:
        if isinstance(item, LayoutRow):
            _draw_region(ax, y, item, cells, highlight)
        else:
            ax.text(0.1, y, f"⋮ {human_size(item)} unmapped", va="center", fontsize=8,
                    color="#666666", style="italic")
    for state, rectangles in cells.items():
        ax.add_collection(PatchCollection(rectangles, facecolor=PAGE_STYLES[state][0],
                                          edgecolor="#444444", linewidth=0.5))
    regions = [(y, item) for y, item in rows if isinstance(item, LayoutRow)]
    ax.set_yticks([y for y, _ in regions],
                  [f"{row.name or '(unnamed)'}  {row.access}\n{row.base:#x}, "
                   f"{human_size(row.size)}" for _, row in regions], fontsize=8)
    ax.set_ylim((rows[-1][0] + 0.6) if rows else 1, -0.2)
    ax.set_xlim(0, _cells_wide(layout) + 0.5)
    ax.set_xlabel(f"page of the region (over {MAX_CELLS} pages: first and last {EDGE_CELLS} "
                  f"shown; gaps not to scale)", fontsize=9)
    ax.set_title(title)
    if legend:
        ax.legend(handles=legend_handles(layout), loc="upper left", bbox_to_anchor=(1.01, 1),
                  fontsize=8)
    return ax.figure


def _draw_region(ax: Axes, y: float, row: LayoutRow, cells: dict, highlight: int | None):
    drawn = drawn_pages(row.pages)
    holds = highlight is not None and row.base <= highlight < row.end
    ax.add_patch(Rectangle((0, y - REGION_HEIGHT / 2), drawn[-1][0] + 1, REGION_HEIGHT,
                           facecolor=_region_colour(row.access),
                           edgecolor="#d00000" if holds else "black",
                           linewidth=2.5 if holds else 0.8, gid=f"region {row.base:#x}"))
    for cell, _, state in drawn:
        cells[state].append(Rectangle((cell + 0.15, y - 0.25), 0.7, 0.5))
    if len(drawn) < len(row.pages):
        ax.text(EDGE_CELLS + 1, y, f"…{len(row.pages) - 2 * EDGE_CELLS}…", ha="center",
                va="center", fontsize=7)


def _region_colour(access: str) -> tuple:
    """The access's colour, light enough for the page cells to show on it."""
    return to_rgba(ACCESS_COLOURS.get(access, OTHER_ACCESS_COLOUR), 0.45)


def legend_handles(*layouts: list[LayoutRow]) -> list[Patch]:
    """One entry per access the layouts hold, then one per page state."""
    accesses = sorted({row.access for layout in layouts for row in layout})
    handles = [Patch(facecolor=_region_colour(access), edgecolor="black",
                     label=f"region {access}") for access in accesses]
    return handles + [Patch(facecolor=colour, edgecolor="#444444", label=label)
                      for colour, label in PAGE_STYLES.values()]


def plot_two_layouts(left: list[LayoutRow], right: list[LayoutRow], titles: tuple[str, str],
                     first_difference: int | None = None) -> LessonFigure:
    """Two layouts side by side (parent and child, expected and got) on the same page scale;
    the regions holding the address `first_difference` are outlined in red in both."""
    figure = LessonFigure(figsize=(12.8, _height([left, right]) + 0.4), layout="constrained")
    wide = max(_cells_wide(left), _cells_wide(right))
    for layout, title, ax in zip((left, right), titles, figure.subplots(1, 2)):
        plot_address_space(layout, title, ax=ax, highlight=first_difference, legend=False)
        ax.set_xlim(0, wide + 0.5)
        ax.set_xlabel("page of the region (gaps not to scale)", fontsize=9)
    figure.legend(handles=legend_handles(left, right), loc="outside lower center", ncol=4,
                  fontsize=8)
    if first_difference is not None:
        figure.suptitle(f"first difference at {first_difference:#x}", color="#d00000")
    return figure


def page_fault_call_chain(process: Process, vaddr: int, write: bool = True) -> list[ChainEvent]:
    """The calls of one access by `process` at `vaddr` (a one-byte write, or a read), from the
    MMU's fault to the VMObject's handler and the retry. Each event's probe says what the
    page's PTE holds at that moment."""
    space = process.space
    if space is None:
        raise ValueError(f"process {process.pid} has exited")

    def probe() -> str:
        walk = trace_walk(space.mm.machine.memory, space.page_directory.cr3(), vaddr)
        last = walk.steps[-1] if walk.steps else None
        if last is None or not last.present or len(walk.steps) < space.mm.format.levels:
            return "PTE: not present"
        writable = "writable" if last.flags & PTEFlags.READ_WRITE else "read-only"
        return f"PTE: present, {writable}, frame {last.frame:#x}"

    def access():
        return process.write(vaddr, b"!") if write else process.read(vaddr, 1)

    _, events = record_call_chain(access, FAULT_CHAIN_FUNCTIONS, probe)
    return events
