"""cdab5b20916 (2021-08-06): a generic identity-mapping API for one boot-time use, and what
replaced it.

Application processors start at physical 0x8000 and turn paging on while still running there,
so 0x8000 must briefly be mapped at virtual 0x8000 (see `refimpl.kernel.ap_boot`).

Before the commit (`MemoryManagerWithIdentityRegions`, `boot_aps`):
- every PageDirectory carried a second range allocator, `identity_range_allocator`, next to its
  ordinary `range_allocator`; only the kernel's was ever initialized (to [0, 2 MiB));
- MemoryManager offered `allocate_kernel_region_identity(paddr, size, ...)`, which took the
  virtual range equal to the physical one from that allocator, for anyone to call;
- unmapping a region that gave its range back had to work out which of the two allocators
  owned it (Region::unmap: `range_allocator().contains(range())`, for every region, user ones
  included).

At the commit (`MemoryManagerWithKernelRangeAllocator`, `boot_aps_at_cdab5b20916`): the identity
allocator and the API are gone, the AP boot code builds its region with the range set directly,
and the ordinary `range_allocator` stays in every PageDirectory (processes stopped using it in
02a95a196f0, and e8f543c3908 removed it, April 2022). So the new code had one thing to get
right: unmap the region *without* giving [0x8000, +4 KiB) to the kernel's range allocator,
which never owned it (`ShouldDeallocateVirtualMemoryVirtualRange::No`). Handing it over anyway
fails the allocator's `VERIFY(m_total_range.contains(range))`: a panic at boot.

The modern kernel (`refimpl.kernel.ap_boot`) has no kernel range allocator at all, so its unmap
has nothing to leave out (SerenityOS: a plain `unmap()` since a3db0ab14fc).
"""

from __future__ import annotations

from refimpl.ak import MUST, TRY, KernelPanic, fallible
from refimpl.hw import X86_64, Machine, MiB, PageFault
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.ap_boot import (AP_BOOT_TRAMPOLINE, copy_trampoline,
                                    create_identity_mapped_region, smp_enable, start_ap)
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.page_directory import PageDirectory
from refimpl.kernel.region import Region
from refimpl.kernel.virtual_range_allocator import VirtualRangeAllocator

IDENTITY_RANGE_SIZE = 2 * 1024 * 1024
ALLOCATOR_MEMBER_SIZE = 48
"""Bytes an (empty) VirtualRangeAllocator member adds to a PageDirectory object."""


class PageDirectoryWithRangeAllocator(PageDirectory):
    """A PageDirectory with its `m_range_allocator` member, as at cdab5b20916."""

    OBJECT_SIZE = PageDirectory.OBJECT_SIZE + ALLOCATOR_MEMBER_SIZE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.range_allocator = VirtualRangeAllocator(self._mm)


class PageDirectoryWithIdentityAllocator(PageDirectoryWithRangeAllocator):
    """Before cdab5b20916: and `m_identity_range_allocator`, in every directory."""

    OBJECT_SIZE = PageDirectoryWithRangeAllocator.OBJECT_SIZE + ALLOCATOR_MEMBER_SIZE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.identity_range_allocator = VirtualRangeAllocator(self._mm)


class MemoryManagerWithKernelRangeAllocator(MemoryManager):
    """The kernel as cdab5b20916 left it: its virtual memory above the kmalloc range comes from
    the kernel directory's range allocator (the simulation allocates nothing else from it)."""

    page_directory_class = PageDirectoryWithRangeAllocator

    def __init__(self, machine: Machine, initial_kmalloc_pages: int = 4) -> None:
        super().__init__(machine, initial_kmalloc_pages)
        general_base = self.layout.kmalloc_range_base + self.layout.kmalloc_range_size
        MUST(self.kernel_page_directory().range_allocator.initialize_with_range(
            general_base, self.layout.kernel_pd_end - general_base))

    def unmap_kernel_region(self, region: Region,
                            should_deallocate_virtual_range: bool = True) -> None:
        """Region::unmap(ShouldDeallocateVirtualMemoryVirtualRange), then ~Region."""
        if region.page_directory is not None:
            region.unmap()
            if should_deallocate_virtual_range:
                MUST(self.kernel_page_directory().range_allocator.deallocate(region.range))
        region.destroy()


class MemoryManagerWithIdentityRegions(MemoryManagerWithKernelRangeAllocator):
    """The kernel before cdab5b20916."""

    page_directory_class = PageDirectoryWithIdentityAllocator

    def __init__(self, machine: Machine, initial_kmalloc_pages: int = 4) -> None:
        super().__init__(machine, initial_kmalloc_pages)
        MUST(self.kernel_page_directory().identity_range_allocator.initialize_with_range(
            0, IDENTITY_RANGE_SIZE))

    @fallible
    def allocate_kernel_region_identity(self, paddr: int, size: int, name: str,
                                        access: Region.Access):
        """ErrorOr[Region]: `[paddr, paddr + size)` mapped at the same virtual addresses."""
        kernel = self.kernel_page_directory()
        identity = TRY(kernel.identity_range_allocator.try_allocate_specific(paddr, size))
        vmobject = AnonymousVMObject.try_create_for_physical_range(self, paddr, size)
        if vmobject.is_error():
            MUST(kernel.identity_range_allocator.deallocate(identity))
            return vmobject
        region = Region.try_create_unplaced(self, vmobject.value(), 0, name, access)
        vmobject.value().unref()
        if region.is_error():
            MUST(kernel.identity_range_allocator.deallocate(identity))
            return region
        region = region.value()
        region.range = identity
        mapped = region.map(kernel)
        if mapped.is_error():
            self.unmap_kernel_region(region)
            return mapped
        return region

    def unmap_kernel_region(self, region: Region,
                            should_deallocate_virtual_range: bool = True) -> None:
        """Region::unmap(ShouldDeallocateVirtualMemoryVirtualRange), then ~Region."""
        kernel = self.kernel_page_directory()
        if region.page_directory is not None:
            region.unmap()
            if should_deallocate_virtual_range:
                if kernel.range_allocator.total_range.contains(region.range):
                    MUST(kernel.range_allocator.deallocate(region.range))
                else:
                    MUST(kernel.identity_range_allocator.deallocate(region.range))
        region.destroy()


@fallible
def boot_aps(mm: MemoryManagerWithIdentityRegions):
    """Before: identity-map the trampoline with the generic API; the unmap gives the range back
    to the identity allocator (C++: ~Region at the end of do_boot_aps)."""
    aps = [cpu for cpu in mm.machine.aps if not cpu.online]
    if not aps:
        return None
    identity = TRY(mm.allocate_kernel_region_identity(
        AP_BOOT_TRAMPOLINE, PAGE_SIZE, "AP boot trampoline",
        Region.Access.READ | Region.Access.WRITE | Region.Access.EXECUTE))
    copy_trampoline(mm)
    try:
        for cpu in aps:
            start_ap(mm, cpu)
    except PageFault as fault:
        mm.unmap_kernel_region(identity)
        raise KernelPanic(f"AP {cpu.id} did not come online: {fault}") from None
    mm.unmap_kernel_region(identity)
    smp_enable(mm)
    return None


@fallible
def boot_aps_at_cdab5b20916(mm: MemoryManagerWithKernelRangeAllocator):
    """After: the AP boot code maps the trampoline itself, and unmaps it without handing its
    range to the kernel's range allocator, which never owned it."""
    aps = [cpu for cpu in mm.machine.aps if not cpu.online]
    if not aps:
        return None
    identity = TRY(create_identity_mapped_region(mm, AP_BOOT_TRAMPOLINE, PAGE_SIZE))
    copy_trampoline(mm)
    try:
        for cpu in aps:
            start_ap(mm, cpu)
    except PageFault as fault:
        mm.unmap_kernel_region(identity, should_deallocate_virtual_range=False)
        raise KernelPanic(f"AP {cpu.id} did not come online: {fault}") from None
    mm.unmap_kernel_region(identity, should_deallocate_virtual_range=False)
    smp_enable(mm)
    return None


def page_directory_heap_cost(kernel_class: type[MemoryManager]) -> int:
    """Bytes of kernel heap one new user PageDirectory takes in a kernel of `kernel_class`."""
    kernel = kernel_class(Machine(X86_64, ram_size=16 * MiB))
    heap = kernel.kmalloc_heap.allocated_bytes()
    MUST(kernel.page_directory_class.try_create_for_userspace(kernel))
    return kernel.kmalloc_heap.allocated_bytes() - heap
