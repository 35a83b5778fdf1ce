"""What /proc/<pid>/vm shows: an address space region by region (Kernel/ProcessSpecificExposed).

`virtual_memory_stats` gives, per region, the keys of `Process::procfs_get_virtual_memory_stats`
at f0f97e1db02 (ProcessSpecificExposed.cpp#L231-L275), in its order, computed from the simulated
kernel. `layout` is a smaller view of the same regions for maps and predictions: one character
per page saying whether it is resident, and shared with whom.

Keys that cannot be modelled honestly, and what they say here:
- "volatile": always False; volatile (purgeable) memory is not modelled.
- "purgeable": SerenityOS reports `vmobject().is_anonymous()` under this key (not whether the
  memory is purgeable); so it is True for anonymous memory, False for the program's file.
- "cow_pages": the VMObject's pages marked copy-on-write, over the whole VMObject (as there),
  but fork marks only pages that hold data here; SerenityOS marks every page, zero pages too
  (AnonymousVMObject.cpp#L259-L272), so its count after a fork is the VMObject's page count.
- "vmobject": "SharedInodeVMObject" for the program's file, which a ProgramFileVMObject stands
  for; "amount_dirty" of it is 0, since nothing ever writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING

from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.process import ProgramFileVMObject, maps_signal_trampoline

if TYPE_CHECKING:
    from refimpl.kernel.address_space import AddressSpace
    from refimpl.kernel.region import Region

NOT_RESIDENT, PRIVATE, COPY_ON_WRITE, SHARED = ".", "#", "c", "s"


@dataclass(frozen=True)
class LayoutRow:
    """One region: where, its access ("r-x"), its name, and one character per page:
    "." not resident (never written: no page, or the shared zero page), "#" resident and
    private, "c" resident and copy-on-write (shared with another process since fork, or
    still marked: its next write faults), "s" resident in a shared region (MAP_SHARED, the
    program's file, the signal trampoline)."""

    base: int
    size: int
    access: str
    name: str
    pages: str

    @property
    def end(self) -> int:
        return self.base + self.size

    def resident(self) -> int:
        return len(self.pages) - self.pages.count(NOT_RESIDENT)


Layout = list[LayoutRow]


def is_resident(region: Region, page_index: int) -> bool:
    """As Region::amount_resident counts: a page that is neither absent nor the zero page."""
    return region.physical_page(page_index) is not None and \
        not region.vmobject.is_shared_zero(region.first_page_index() + page_index)


def page_state(region: Region, page_index: int) -> str:
    """The LayoutRow character of one page."""
    if not is_resident(region, page_index):
        return NOT_RESIDENT
    if region.shared:
        return SHARED
    return COPY_ON_WRITE if region.should_cow(page_index) else PRIVATE


def layout(space: AddressSpace) -> Layout:
    """The regions of `space` in address order."""
    return [LayoutRow(int(region.vaddr()), region.size(), region.access.describe(), region.name,
                      "".join(page_state(region, index) for index in range(region.page_count())))
            for region in space.region_tree.regions()]


def virtual_memory_stats(space: AddressSpace) -> list[dict]:
    """/proc/<pid>/vm: one dict per region, SerenityOS's keys in its order, plain values."""
    return [_region_stats(space, region) for region in space.region_tree.regions()]


def _region_stats(space: AddressSpace, region: Region) -> dict:
    is_file = isinstance(region.vmobject, ProgramFileVMObject)
    resident = sum(is_resident(region, index) for index in range(region.page_count()))
    stats = {
        "readable": region.is_readable(),
        "writable": region.is_writable(),
        "executable": region.is_executable(),
        "stack": region.stack,
        "shared": region.shared,
        "syscall": maps_signal_trampoline(space.mm, region),
        "purgeable": not is_file,
    }
    if not is_file:
        stats["volatile"] = False
    stats.update({
        "cacheable": region.cacheable,
        "address": int(region.vaddr()),
        "size": region.size(),
        "amount_resident": resident * PAGE_SIZE,
        "amount_dirty": 0 if is_file else resident * PAGE_SIZE,
        "cow_pages": 0 if is_file else len(region.vmobject.cow_map),
        "name": region.name,
        "vmobject": "SharedInodeVMObject" if is_file else "AnonymousVMObject",
        "pagemap": "".join(_pagemap_letter(region, index)
                           for index in range(region.page_count())),
    })
    return stats


def _pagemap_letter(region: Region, page_index: int) -> str:
    """"N" no page, "Z" the shared zero page, "P" a page of its own (L259-L268)."""
    page = region.physical_page(page_index)
    if page is None:
        return "N"
    return "P" if is_resident(region, page_index) else "Z"


def access_letters(entry: dict) -> str:
    """"r-x" from a /proc/<pid>/vm entry's readable, writable and executable keys."""
    return "".join(letter if entry[key] else "-" for key, letter in
                   (("readable", "r"), ("writable", "w"), ("executable", "x")))


def short_pagemap(pagemap: str, longest: int = 16) -> str:
    """A pagemap longer than `longest` letters, run-length encoded ("Z×255 P") to fit a table
    cell; a shorter one as it is."""
    if len(pagemap) <= longest:
        return pagemap
    runs = ((letter, len(list(run))) for letter, run in groupby(pagemap))
    return " ".join(letter if count == 1 else f"{letter}×{count}" for letter, count in runs)
