"""The memory-management core of the SerenityOS kernel, in its modern (post-refactoring) form."""

from refimpl.kernel.address import (PAGE_SIZE, PhysicalAddress, VirtualAddress, is_page_aligned,
                                    page_round_down, page_round_up)
from refimpl.kernel.allocation import AllocationCounters, AllocationKind, AllocationRecord
from refimpl.kernel.kmalloc import KmallocHeap
from refimpl.kernel.layout import KernelLayout
from refimpl.kernel.memory_manager import MemoryManager, ShouldZeroFill
from refimpl.kernel.page_directory import PageDirectory
from refimpl.kernel.page_table_entry import PageDirectoryEntry, PageTableEntry, TableWindow
from refimpl.kernel.physical_page import MayReturnToFreeList, PagePurpose, PhysicalPage
from refimpl.kernel.physical_region import PhysicalRegion
from refimpl.kernel.physical_zone import PhysicalZone

__all__ = [
    "AllocationCounters", "AllocationKind", "AllocationRecord", "KernelLayout", "KmallocHeap",
    "MayReturnToFreeList", "MemoryManager", "PAGE_SIZE", "PageDirectory", "PageDirectoryEntry",
    "PagePurpose", "PageTableEntry", "PhysicalAddress", "PhysicalPage", "PhysicalRegion",
    "PhysicalZone", "ShouldZeroFill", "TableWindow", "VirtualAddress", "is_page_aligned",
    "page_round_down", "page_round_up",
]
