"""VMObject: the pages behind one or more regions (Kernel/Memory/VMObject).

A VMObject is an array of slots, one per page; a slot holds a reference on a PhysicalPage (or is
empty). Regions map a window of it. Page-table entries hold no references: the slot is what keeps
a user page alive, so a page may be unmapped only while its slot still holds it.

VMObjects are reference counted like the C++ `RefCounted`: every Region that uses one holds a
reference (a region split in two by munmap means two references); the last unref releases the
slots' pages and the object's own kernel-heap memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refimpl.ak import VERIFY
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.physical_page import PhysicalPage

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager
    from refimpl.kernel.region import Region


class VMObject:
    OBJECT_SIZE = 96
    """Bytes of kernel heap for the object itself; the slot array adds 8 per page."""

    def __init__(self, mm: MemoryManager, pages: list[PhysicalPage | None],
                 object_address: VirtualAddress) -> None:
        self._mm = mm
        self.physical_pages = pages
        self.regions: list[Region] = []
        self._object_address = object_address
        self._ref_count = 1

    @classmethod
    def heap_size(cls, page_count: int) -> int:
        return cls.OBJECT_SIZE + 8 * page_count

    @property
    def mm(self) -> MemoryManager:
        """The MemoryManager this object lives in (C++ code uses the global `MM`)."""
        return self._mm

    def object_address(self) -> VirtualAddress:
        """Where this object lives on the kernel heap."""
        return self._object_address

    def size(self) -> int:
        return len(self.physical_pages) * PAGE_SIZE

    def page_count(self) -> int:
        return len(self.physical_pages)

    def ref_count(self) -> int:
        return self._ref_count

    def ref(self) -> None:
        VERIFY(self._ref_count > 0, f"ref() of a destroyed {type(self).__name__}")
        self._ref_count += 1

    def unref(self) -> None:
        VERIFY(self._ref_count > 0, f"unref() of a destroyed {type(self).__name__}")
        self._ref_count -= 1
        if self._ref_count == 0:
            VERIFY(not self.regions, "last reference to a VMObject dropped while mapped")
            for page in self.physical_pages:
                if page is not None:
                    page.unref()
            self.physical_pages = []
            self._mm.kfree(self._object_address)

    def add_region(self, region: Region) -> None:
        self.regions.append(region)

    def remove_region(self, region: Region) -> None:
        self.regions.remove(region)
