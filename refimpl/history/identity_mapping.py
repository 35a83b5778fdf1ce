"""Before cdab5b20916 (2021-08-06): a generic identity-mapping API for one boot-time use.

Application processors start at physical 0x8000 and turn paging on while still running there,
so 0x8000 must briefly be mapped at virtual 0x8000 (see `refimpl.kernel.ap_boot`). Before this
commit the kernel served that one need with general machinery:
- every PageDirectory carried a second range allocator, `identity_range_allocator`, next to its
  ordinary one; only the kernel's was ever initialized (to [0, 2 MiB));
- MemoryManager offered `allocate_kernel_region_identity(paddr, size, ...)`, which took the
  virtual range equal to the physical one from that allocator, for anyone to call;
- unmapping a region had to work out which of the two allocators to give its range back to.

The commit moved the identity mapping into the AP boot code and deleted all three. Compare
`boot_aps` here with `refimpl.kernel.ap_boot.boot_aps`.

The simulated kernel's own virtual memory is not otherwise managed by a range allocator (it
came from RegionTree later), so `range_allocator` here covers only the kernel range the
`unmap_kernel_region` branch needs to tell apart from the identity range.
"""

from __future__ import annotations

from refimpl.ak import MUST, TRY, KernelPanic, fallible
from refimpl.hw import X86_64, Machine, MiB, PageFault
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.ap_boot import AP_BOOT_TRAMPOLINE, copy_trampoline, start_ap
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.page_directory import PageDirectory
from refimpl.kernel.region import Region
from refimpl.kernel.virtual_range_allocator import VirtualRangeAllocator

IDENTITY_RANGE_SIZE = 2 * 1024 * 1024
ALLOCATOR_MEMBER_SIZE = 48
"""Bytes an (empty) RangeAllocator member adds to a PageDirectory object."""


class PageDirectoryWithIdentityAllocator(PageDirectory):
    """A PageDirectory with its two range allocators, as members."""

    OBJECT_SIZE = PageDirectory.OBJECT_SIZE + 2 * ALLOCATOR_MEMBER_SIZE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.range_allocator = VirtualRangeAllocator(self._mm)
        self.identity_range_allocator = VirtualRangeAllocator(self._mm)


class MemoryManagerWithIdentityRegions(MemoryManager):
    page_directory_class = PageDirectoryWithIdentityAllocator

    def __init__(self, machine: Machine, initial_kmalloc_pages: int = 4) -> None:
        super().__init__(machine, initial_kmalloc_pages)
        kernel = self.kernel_page_directory()
        MUST(kernel.identity_range_allocator.initialize_with_range(0, IDENTITY_RANGE_SIZE))
        general_base = self.layout.kmalloc_range_base + self.layout.kmalloc_range_size
        MUST(kernel.range_allocator.initialize_with_range(
            general_base, self.layout.kernel_pd_end - general_base))

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

    def unmap_kernel_region(self, region: Region) -> None:
        """Unmap and free a kernel region, giving its range back to whichever allocator owns
        it: the ordinary one if it covers the range, else the identity one."""
        kernel = self.kernel_page_directory()
        if region.page_directory is not None:
            region.unmap()
        if kernel.range_allocator.total_range.contains(region.range):
            MUST(kernel.range_allocator.deallocate(region.range))
        else:
            MUST(kernel.identity_range_allocator.deallocate(region.range))
        region.destroy()


@fallible
def boot_aps(mm: MemoryManagerWithIdentityRegions):
    """Start every AP, identity-mapping the trampoline with the generic API."""
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
    return None


def page_directory_heap_cost(kernel_class: type[MemoryManager]) -> int:
    """Bytes of kernel heap one new user PageDirectory takes in a kernel of `kernel_class`."""
    kernel = kernel_class(Machine(X86_64, ram_size=16 * MiB))
    heap = kernel.kmalloc_heap.allocated_bytes()
    MUST(kernel.page_directory_class.try_create_for_userspace(kernel))
    return kernel.kmalloc_heap.allocated_bytes() - heap
