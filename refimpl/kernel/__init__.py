"""The memory-management core of the SerenityOS kernel, in its modern (post-refactoring) form.

Names follow SerenityOS's Kernel/Memory, Kernel/Locking and Kernel/Interrupts/APIC in snake_case.
Region access bits are `Region.Access` (C++ `Region::Access`), to keep them apart from the
MMU's `refimpl.hw.Access`.
"""

from refimpl.kernel.address import (PAGE_SIZE, PhysicalAddress, VirtualAddress, is_page_aligned,
                                    page_round_down, page_round_up)
from refimpl.kernel.address_space import (PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE,
                                          AddressSpace)
from refimpl.kernel.allocation import AllocationCounters, AllocationKind, AllocationRecord
from refimpl.kernel.anonymous_vmobject import AllocationStrategy, AnonymousVMObject
from refimpl.kernel.ap_boot import (AP_BOOT_TRAMPOLINE, boot_aps, create_identity_mapped_region,
                                    start_ap)
from refimpl.kernel.kmalloc import KmallocHeap
from refimpl.kernel.layout import KernelLayout
from refimpl.kernel.locking import (MAIN, ExecutionContext, RecursiveSpinlock, Spinlock,
                                    SpinlockProtected, WaitingFor, current_context)
from refimpl.kernel.memory_manager import MemoryManager, ShouldZeroFill
from refimpl.kernel.page_directory import PageDirectory
from refimpl.kernel.page_table_entry import PageDirectoryEntry, PageTableEntry, TableWindow
from refimpl.kernel.physical_page import MayReturnToFreeList, PagePurpose, PhysicalPage
from refimpl.kernel.physical_region import PhysicalRegion
from refimpl.kernel.physical_zone import PhysicalZone
from refimpl.kernel.region import Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.scheduler import Program, Scheduler, SimThread, explore, replay
from refimpl.kernel.user_access import read_user_memory, running, write_user_memory
from refimpl.kernel.virtual_range import VirtualRange
from refimpl.kernel.virtual_range_allocator import VirtualRangeAllocator
from refimpl.kernel.vmobject import VMObject

__all__ = [
    "AP_BOOT_TRAMPOLINE", "AddressSpace", "AllocationCounters", "AllocationKind",
    "AllocationRecord", "AllocationStrategy", "AnonymousVMObject", "ExecutionContext",
    "KernelLayout", "KmallocHeap", "MAIN", "MayReturnToFreeList", "MemoryManager", "PAGE_SIZE",
    "PROT_EXEC", "PROT_NONE", "PROT_READ", "PROT_WRITE", "PageDirectory", "PageDirectoryEntry",
    "PagePurpose", "PageTableEntry", "PhysicalAddress", "PhysicalPage", "PhysicalRegion",
    "PhysicalZone", "Program", "RecursiveSpinlock", "Region", "RegionTree", "Scheduler",
    "ShouldZeroFill", "SimThread", "Spinlock", "SpinlockProtected", "TableWindow", "VMObject",
    "VirtualAddress", "VirtualRange", "VirtualRangeAllocator", "WaitingFor", "boot_aps",
    "create_identity_mapped_region", "current_context", "explore", "is_page_aligned",
    "page_round_down", "page_round_up", "read_user_memory", "replay", "running", "start_ap",
    "write_user_memory",
]
