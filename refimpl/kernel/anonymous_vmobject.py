"""AnonymousVMObject: memory that starts as zeros and is shared copy-on-write after fork.

- Demand zero: with AllocationStrategy.NONE every slot starts as the shared zero page, mapped
  read-only. The first write faults; `handle_zero_fault` puts a private zeroed page in the slot.
- Copy-on-write: `try_clone` (fork) makes a second object whose slots hold the *same* pages (each
  page gains a reference) and marks them in the clone's `cow_map`; the caller marks the parent's
  once the whole fork has succeeded (`mark_shared_pages_cow`). A write to a CoW page faults;
  `handle_cow_fault` copies the page, unless this object is the page's last holder, in which case
  it just stops treating it as CoW.
- For a physical range (the AP trampoline at 0x8000, MMIO), slots hold pages that are not the
  allocator's to give out: they never return to the free list.

Not modelled: commit accounting (AllocationStrategy.RESERVE and the lazily committed page),
purgeable memory, and the shared pool of pre-committed pages SerenityOS uses so that a CoW break
cannot fail. Here a zero or CoW fault may fail with ENOMEM, and then nothing has changed.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from refimpl.ak import TRY, VERIFY, Errno, Error, check_int, fallible
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress, is_page_aligned
from refimpl.kernel.physical_page import (MayReturnToFreeList, PagePurpose, PhysicalPage,
                                          ShouldZeroFill)
from refimpl.kernel.vmobject import VMObject

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager


ZERO_FAULT = "demand zero"
"""A write replaced the shared zero page by a private zeroed page (handle_zero_fault)."""
COW_FAULT = "copy-on-write"
"""A write to a page shared copy-on-write got a private copy (handle_cow_fault)."""
COW_FAULT_LAST_HOLDER = "copy-on-write, last holder"
"""A copy-on-write fault on a page nobody else holds any more: no copy, just made writable."""


class AllocationStrategy(enum.Enum):
    NONE = "none"
    """Every page is the shared zero page until it is written."""
    ALLOCATE_NOW = "allocate now"
    """Every page is allocated (zeroed) when the object is created."""


class AnonymousVMObject(VMObject):
    def __init__(self, mm: MemoryManager, pages: list[PhysicalPage | None],
                 object_address: VirtualAddress) -> None:
        super().__init__(mm, pages, object_address)
        self.cow_map: set[int] = set()

    # Creation ----------------------------------------------------------------------------------

    @classmethod
    @fallible
    def try_create_with_size(cls, mm: MemoryManager, size: int,
                             strategy: AllocationStrategy = AllocationStrategy.NONE):
        """ErrorOr[AnonymousVMObject] (of the class it is called on) of `size` bytes (a positive
        multiple of the page size)."""
        check_int("size", size)
        if size <= 0 or not is_page_aligned(size):
            return Error.from_errno(Errno.EINVAL, f"VMObject size {size:#x} is not a positive "
                                                  f"multiple of the page size")
        page_count = size // PAGE_SIZE
        pages: list[PhysicalPage | None] = []
        if strategy is AllocationStrategy.ALLOCATE_NOW:
            for _ in range(page_count):
                page = mm.allocate_physical_page(purpose=PagePurpose.USER)
                if page.is_error():
                    _unref_all(pages)
                    return page
                pages.append(page.value())
        address = mm.kmalloc(AnonymousVMObject.heap_size(page_count))
        if address.is_error():
            _unref_all(pages)
            return address
        if strategy is AllocationStrategy.NONE:
            for _ in range(page_count):
                mm.shared_zero_page.ref()
                pages.append(mm.shared_zero_page)
        return cls(mm, pages, address.value())

    @staticmethod
    @fallible
    def try_create_for_physical_range(mm: MemoryManager, paddr: int, size: int):
        """ErrorOr[AnonymousVMObject] over `[paddr, paddr + size)`: reserved low memory that no
        allocator owns (the AP trampoline page). A frame the physical allocator owns, free or
        not, is EBUSY: taking it here would hand it out twice. Its pages never return to the
        free list."""
        check_int("paddr", paddr)
        check_int("size", size)
        if paddr < 0 or not is_page_aligned(paddr) or size <= 0 or not is_page_aligned(size):
            return Error.from_errno(Errno.EINVAL, f"physical range P{paddr:#x} +{size:#x} is "
                                                  f"negative, empty or not page-aligned")
        frames = range(paddr // PAGE_SIZE, (paddr + size) // PAGE_SIZE)
        if frames.stop > len(mm.physical_page_entries):
            return Error.from_errno(Errno.EINVAL, f"P{paddr:#x} +{size:#x} is outside RAM")
        allocator = mm.user_physical_region
        owned = range(allocator.first_page, allocator.first_page + allocator.page_count)
        if frames.start < owned.stop and owned.start < frames.stop:
            return Error.from_errno(Errno.EBUSY, f"P{paddr:#x} +{size:#x} belongs to the "
                                                 f"physical page allocator")
        if any(mm.physical_page_entries[frame] is not None for frame in frames):
            return Error.from_errno(Errno.EBUSY, f"P{paddr:#x} +{size:#x} is in use")
        address = TRY(mm.kmalloc(AnonymousVMObject.heap_size(len(frames))))
        pages = [PhysicalPage.create(mm, frame * PAGE_SIZE, MayReturnToFreeList.NO,
                                     PagePurpose.KERNEL) for frame in frames]
        return AnonymousVMObject(mm, pages, address)

    @fallible
    def try_clone(self):
        """ErrorOr[AnonymousVMObject]: a fork's copy sharing every page, copy-on-write. The
        parent is not touched; call `mark_shared_pages_cow()` on it once the fork succeeded."""
        address = TRY(self._mm.kmalloc(self.heap_size(self.page_count())))
        clone = AnonymousVMObject(self._mm, list(self.physical_pages), address)
        for page in clone.physical_pages:
            if page is not None:
                page.ref()
        clone.mark_shared_pages_cow()
        return clone

    def mark_shared_pages_cow(self) -> None:
        """Every page other than the zero page becomes copy-on-write in this object."""
        zero = self._mm.shared_zero_page
        self.cow_map = {index for index, page in enumerate(self.physical_pages)
                        if page is not None and page is not zero}

    # Faults --------------------------------------------------------------------------------------

    def should_cow(self, page_index: int) -> bool:
        return page_index in self.cow_map

    def is_shared_zero(self, page_index: int) -> bool:
        return self.physical_pages[page_index] is self._mm.shared_zero_page

    @fallible
    def handle_zero_fault(self, page_index: int):
        """Replace the shared zero page in a slot by a private zeroed page: ErrorOr[ZERO_FAULT]
        (the kind of fault resolved, which SerenityOS counts per thread)."""
        VERIFY(self.is_shared_zero(page_index), "zero fault on a page that is not the zero page")
        page = TRY(self._mm.allocate_physical_page(purpose=PagePurpose.USER))
        self._mm.shared_zero_page.unref()
        self.physical_pages[page_index] = page
        return ZERO_FAULT

    @fallible
    def handle_cow_fault(self, page_index: int, vaddr: int):
        """Give this object its own copy of a CoW page (`vaddr` is where it faulted):
        ErrorOr[COW_FAULT, or COW_FAULT_LAST_HOLDER when nothing had to be copied].

        The copy reads the old page by its physical address, through this CPU's quickmap
        window, so it is right whatever CR3 is loaded. SerenityOS reads it through `vaddr`
        instead, in the faulting process's address space with SMAP disabled (24ecf1d0218:
        Kernel/Memory/AnonymousVMObject.cpp#L330-L333), which is only correct because a fault
        is always handled with the faulting process's CR3 loaded; here the kernel's tests and
        lessons may call the handler from anywhere, so it must not depend on that.
        """
        VERIFY(self.should_cow(page_index), "CoW fault on a page that is not copy-on-write")
        old = self.physical_pages[page_index]
        if old.ref_count() == 1:
            self.cow_map.discard(page_index)  # the last holder: the page is ours alone now
            return COW_FAULT_LAST_HOLDER
        new = TRY(self._mm.allocate_physical_page(ShouldZeroFill.NO, PagePurpose.USER))
        cpu = self._mm.current_cpu()
        window = self._mm.quickmap_page(old.paddr())
        contents = cpu.load(window, PAGE_SIZE)
        self._mm.unquickmap_page()
        window = self._mm.quickmap_page(new.paddr())
        cpu.store(window, contents)
        self._mm.unquickmap_page()
        self.physical_pages[page_index] = new
        self.cow_map.discard(page_index)
        old.unref()
        return COW_FAULT


def _unref_all(pages: list[PhysicalPage | None]) -> None:
    for page in pages:
        if page is not None:
            page.unref()
