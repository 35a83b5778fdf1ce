"""PhysicalPage: a reference-counted handle on one page frame.

The MemoryManager keeps one PhysicalPageEntry per frame of RAM (`physical_page_entries`, indexed by
`paddr >> 12`). An entry is either free (None here; in C++ the same bytes hold free-list links)
or holds the live PhysicalPage of that frame. A page therefore does not need to store its address:
it is wherever its entry is, and `paddr()` computes it from the entry's index.

Reference counting is manual, as `RefPtr` is in C++: whoever stores a page holds one reference.
`allocate_physical_page()` hands out a page with one reference; `ref()` adds one; the `unref()`
that drops the last one frees the frame (`free_this`), unless the page was marked never to return
to the free list (pages of the boot image).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from refimpl.ak import VERIFY
from refimpl.kernel.address import PAGE_SIZE, PhysicalAddress

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager


class ShouldZeroFill(enum.Enum):
    """Whether a newly allocated physical page is cleared (MemoryManager.h)."""

    NO = False
    YES = True


class MayReturnToFreeList(enum.Enum):
    NO = False
    YES = True


class PagePurpose(enum.Enum):
    """What a page is used for. Instrumentation only: the physical-memory map widget colours
    frames by it; no kernel decision ever reads it."""

    KERNEL_IMAGE = "kernel image"
    PAGE_DIRECTORY = "page directory"
    PAGE_TABLE = "page table"
    KERNEL_HEAP = "kernel heap"
    USER = "user"
    SHARED_ZERO = "shared zero page"
    KERNEL = "kernel"


class PhysicalPage:
    __slots__ = ("_mm", "_index", "_ref_count", "may_return_to_freelist", "purpose")

    def __init__(self, mm: MemoryManager, index: int, may_return_to_freelist: MayReturnToFreeList,
                 purpose: PagePurpose) -> None:
        self._mm = mm
        self._index = index
        self._ref_count = 1
        self.may_return_to_freelist = may_return_to_freelist
        self.purpose = purpose

    @staticmethod
    def create(mm: MemoryManager, paddr: int, may_return_to_freelist=MayReturnToFreeList.YES,
               purpose: PagePurpose = PagePurpose.KERNEL) -> PhysicalPage:
        """Construct the page in its PhysicalPageEntry (C++: placement new)."""
        index = paddr // PAGE_SIZE
        VERIFY(mm.physical_page_entries[index] is None,
               f"PhysicalPage.create: frame P{paddr:#x} already has a live PhysicalPage")
        page = PhysicalPage(mm, index, may_return_to_freelist, purpose)
        mm.physical_page_entries[index] = page
        return page

    def paddr(self) -> PhysicalAddress:
        return PhysicalAddress(self._index * PAGE_SIZE)

    def ref_count(self) -> int:
        return self._ref_count

    def ref(self) -> None:
        VERIFY(self._ref_count > 0, f"ref() of freed PhysicalPage {self.paddr()!r}")
        self._ref_count += 1

    def unref(self) -> None:
        VERIFY(self._ref_count > 0, f"unref() of freed PhysicalPage {self.paddr()!r}")
        self._ref_count -= 1
        if self._ref_count == 0:
            self._free_this()

    def _free_this(self) -> None:
        """Destroy the page in its entry and, if allowed, give the frame back to the allocator."""
        paddr = self.paddr()
        self._mm.physical_page_entries[self._index] = None
        if self.may_return_to_freelist is MayReturnToFreeList.YES:
            self._mm.deallocate_physical_page(paddr)

    def __repr__(self) -> str:
        return f"PhysicalPage({self.paddr()!r}, refs={self._ref_count}, {self.purpose.value})"
