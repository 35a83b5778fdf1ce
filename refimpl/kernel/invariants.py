"""Checks of the kernel's invariants, and snapshots to prove a failed call changed nothing.

This is a debugger's view, not kernel code: it reads RAM directly (as `refimpl.hw.inspect` does)
so that checking never moves a quickmap window or touches a TLB, and it can run between any two
steps of a lesson or a test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from refimpl.hw import PTEFlags, mapped_pages
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.physical_page import PagePurpose


def page_table_references(mm: MemoryManager) -> Counter[int]:
    """How many present PDEs point at each frame, over every distinct PD page (the kernel's PD is
    shared by all directories and counted once)."""
    pd_frames = {page.paddr() // PAGE_SIZE
                 for directory in mm.page_directories_by_cr3.values()
                 for page in directory.directory_pages.values()}
    fmt = mm.format
    counts: Counter[int] = Counter()
    for frame in pd_frames:
        for entry in mm.machine.memory.entries(frame):
            if entry & fmt.present_mask:
                counts[fmt.decode_frame(entry)] += 1
    return counts


def page_table_refcount_violations(mm: MemoryManager) -> list[str]:
    """Every page table must have exactly one reference per present PDE pointing at it, and
    every page-table page must be pointed at (else it leaked)."""
    references = page_table_references(mm)
    problems = []
    for frame, count in sorted(references.items()):
        page = mm.physical_page_entries[frame]
        if page is None:
            problems.append(f"PDE points at frame {frame:#x}, which has no live PhysicalPage")
        elif page.ref_count() != count:
            problems.append(f"page table {page.paddr()!r} has {page.ref_count()} reference(s) "
                            f"but {count} PDE(s) point at it")
    for page in mm.live_physical_pages():
        if page.purpose is PagePurpose.PAGE_TABLE and page.paddr() // PAGE_SIZE not in references:
            problems.append(f"page table {page.paddr()!r} is live but no PDE points at it")
    return problems


def physical_page_violations(mm: MemoryManager) -> list[str]:
    """Free + live pages account for every usable page, and free frames hold no live page."""
    region = mm.user_physical_region
    problems = []
    live_usable = sum(1 for page in mm.live_physical_pages()
                      if region.zone_containing(page.paddr() // PAGE_SIZE) is not None)
    if live_usable + region.free_pages() != region.usable_pages():
        problems.append(f"{live_usable} live + {region.free_pages()} free pages != "
                        f"{region.usable_pages()} usable pages")
    for zone in region.zones:
        for start, order in zone.free_blocks():
            for index in range(start, start + (1 << order)):
                if mm.physical_page_entries[zone.base_page + index] is not None:
                    problems.append(f"frame {zone.base_page + index:#x} is free and live")
    return problems


_STATE_FLAGS = ~(PTEFlags.ACCESSED | PTEFlags.DIRTY)


@dataclass(frozen=True)
class KernelSnapshot:
    """What a failed operation must leave exactly as it found it."""

    free_pages: int
    live_pages: tuple[tuple[int, int], ...]
    kmalloc_allocated: int
    kmalloc_size: int
    directories: tuple[int, ...]
    mappings: tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...]

    @staticmethod
    def take(mm: MemoryManager) -> KernelSnapshot:
        quickmap_area = (mm.layout.kernel_pt1024_base, mm.layout.kernel_pt1024_base + 0x200000)
        mappings = []
        for cr3 in sorted(mm.page_directories_by_cr3):
            pages = mapped_pages(mm.machine.memory, cr3)
            mappings.append((cr3, tuple(
                (vaddr, frame, int(flags & _STATE_FLAGS))
                for vaddr, (frame, flags) in sorted(pages.items())
                if not quickmap_area[0] <= vaddr < quickmap_area[1])))
        return KernelSnapshot(
            free_pages=mm.free_physical_pages(),
            live_pages=tuple((page.paddr(), page.ref_count()) for page in mm.live_physical_pages()),
            kmalloc_allocated=mm.kmalloc_heap.allocated_bytes(),
            kmalloc_size=mm.kmalloc_heap.size(),
            directories=tuple(sorted(mm.page_directories_by_cr3)),
            mappings=tuple(mappings),
        )

    def differences(self, other: KernelSnapshot) -> list[str]:
        """What changed between two snapshots, one line per field."""
        return [f"{name} changed" for name in self.__dataclass_fields__
                if getattr(self, name) != getattr(other, name)]
