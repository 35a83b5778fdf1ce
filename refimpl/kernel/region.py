"""Region: a range of virtual memory mapping a window of a VMObject (Kernel/Memory/Region).

A region is created *unplaced* (no range yet), placed by a RegionTree, then mapped into a page
directory. Mapping writes one PTE per page from the VMObject's slots: present, writable only if
the region is writable and the page is neither the shared zero page nor copy-on-write, user only
for user addresses, NX unless executable, cache-disabled unless cacheable.

Differences from SerenityOS: `map()` rolls back the PTEs it wrote when it fails half-way (the
C++ code leaves them); `remap()` only rewrites PTEs that exist, so it can never fail; the
"has been readable/writable/executable" shadow bits are not modelled.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from refimpl.ak import TRY, VERIFY, Errno, Error, KernelPanic, Weakable, fallible
from refimpl.hw import PageFault, PTEFlags
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.virtual_range import VirtualRange

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager
    from refimpl.kernel.page_directory import PageDirectory
    from refimpl.kernel.physical_page import PhysicalPage


class Access(enum.IntFlag):
    """Region access bits, with the same values as PROT_READ, PROT_WRITE, PROT_EXEC."""

    NONE = 0
    READ = 1
    WRITE = 2
    EXECUTE = 4

    def describe(self) -> str:
        return "".join(letter if self & flag else "-" for letter, flag in
                       (("r", Access.READ), ("w", Access.WRITE), ("x", Access.EXECUTE)))


class Region(Weakable):
    """Weakable, as in SerenityOS since 30a8991dbf2: destroying a region nulls every WeakPtr to
    it (lesson 05)."""

    OBJECT_SIZE = 160
    """Bytes of kernel heap a Region object takes."""

    Access = Access  # as Region::Access in C++

    def __init__(self, mm: MemoryManager, vmobject: AnonymousVMObject, offset_in_vmobject: int,
                 name: str, access: Access, cacheable: bool, shared: bool,
                 object_address: VirtualAddress) -> None:
        self._mm = mm
        self.range: VirtualRange | None = None
        self.vmobject = vmobject
        self.offset_in_vmobject = offset_in_vmobject
        self.name = name
        self.access = access
        self.cacheable = cacheable
        self.shared = shared
        self.mmap = False
        self.stack = False  # made by mmap(MAP_STACK): never executable
        self.page_directory: PageDirectory | None = None
        self._object_address = object_address

    @staticmethod
    @fallible
    def try_create_unplaced(mm: MemoryManager, vmobject: AnonymousVMObject,
                            offset_in_vmobject: int, name: str, access: Access,
                            cacheable: bool = True, shared: bool = False):
        """ErrorOr[Region] with no range yet; it holds a reference on `vmobject`."""
        VERIFY(offset_in_vmobject % PAGE_SIZE == 0, "a region's VMObject offset is page-aligned")
        address = TRY(mm.kmalloc(Region.OBJECT_SIZE))
        vmobject.ref()
        region = Region(mm, vmobject, offset_in_vmobject, name, access, cacheable, shared, address)
        vmobject.add_region(region)
        return region

    @staticmethod
    def create_unbacked(mm: MemoryManager | None, name: str) -> Region:
        """A region with no VMObject that only reserves its range once placed, and is never
        mapped or destroyed (Region::create_unbacked, e852a69a069: the kernel image and the
        kmalloc range). Unlike SerenityOS's, it takes no kernel heap (the heap may not exist yet
        when the MemoryManager reserves these). `mm` may be None for a tree outside any kernel."""
        return Region(mm, None, 0, name, Access.READ, True, False, VirtualAddress(0))

    def destroy(self) -> None:
        """Unmap if mapped, leave the kernel's RegionTree, drop the VMObject reference and free
        the object (C++ ~Region). Unmapping comes first: once out of the tree, the range may be
        given to another region, whose PTEs a later unmap would clear (0a83c035469)."""
        if self.page_directory is not None:
            self.unmap()
        if self.is_kernel():
            self._mm.unregister_kernel_region(self)
        self._release()

    def destroy_steps(self):
        """destroy() in a simulated thread (refimpl.kernel.scheduler): unmap, let another CPU
        run, then unregister (waiting for the locks) and free."""
        if self.page_directory is not None:
            self.unmap()
            yield f"{self.name} unmapped"
        if self.is_kernel():
            yield from self._mm.unregister_kernel_region_steps(self)
            yield f"{self.name} unregistered"
        self._release()

    def _release(self) -> None:
        """What ~Region does after unmapping and unregistering."""
        self.vmobject.remove_region(self)
        self.vmobject.unref()
        self.revoke_weak_ptrs()
        self._mm.kfree(self._object_address)

    def object_address(self) -> VirtualAddress:
        """Where this object lives on the kernel heap: the value a C++ `Region*` holds."""
        return self._object_address

    # Geometry ------------------------------------------------------------------------------------

    def vaddr(self) -> VirtualAddress:
        VERIFY(self.range is not None, f"region {self.name!r} is not placed")
        return self.range.base

    def size(self) -> int:
        return self.range.size if self.range is not None else 0

    def page_count(self) -> int:
        return self.size() // PAGE_SIZE

    def first_page_index(self) -> int:
        """The VMObject slot of the region's first page."""
        return self.offset_in_vmobject // PAGE_SIZE

    def vaddr_from_page_index(self, page_index: int) -> VirtualAddress:
        return VirtualAddress(self.vaddr() + page_index * PAGE_SIZE)

    def physical_page(self, page_index: int) -> PhysicalPage | None:
        return self.vmobject.physical_pages[self.first_page_index() + page_index]

    def is_readable(self) -> bool:
        return bool(self.access & Access.READ)

    def is_writable(self) -> bool:
        return bool(self.access & Access.WRITE)

    def is_executable(self) -> bool:
        return bool(self.access & Access.EXECUTE)

    def is_kernel(self) -> bool:
        """Placed below the user range or in the kernel's GiB (Region::is_kernel)."""
        layout = self._mm.layout
        return self.range is not None and (self.range.base < layout.user_range_base or
                                           self.range.base >= layout.kernel_mapping_base)

    def is_user(self) -> bool:
        layout = self._mm.layout
        return self.range is not None and layout.user_range_base <= self.range.base and \
            self.range.end <= layout.user_range_ceiling

    def should_cow(self, page_index: int) -> bool:
        return not self.shared and self.vmobject.should_cow(self.first_page_index() + page_index)

    # Mapping -------------------------------------------------------------------------------------

    def _pte_value(self, page_index: int) -> int:
        """The PTE for one page of this region.

        An inaccessible page (PROT_NONE, or execute-only, which x86 cannot express) gets a
        non-present entry that still names its frame. Being non-zero, it keeps its page table
        allocated when neighbouring pages are released, so making the page accessible again
        (mprotect) rewrites the entry without allocating. Linux marks PROT_NONE pages the same
        way; SerenityOS clears the entry, so its remap may need a new page table and fail.
        """
        page = self.physical_page(page_index)
        if page is None:
            return 0
        fmt = self._mm.format
        if not self.access & (Access.READ | Access.WRITE):
            return fmt.encode(page.paddr() // PAGE_SIZE, PTEFlags(0))
        flags = PTEFlags.PRESENT
        if self.is_writable() and page is not self._mm.shared_zero_page and \
                not self.should_cow(page_index):
            flags |= PTEFlags.READ_WRITE
        if self.is_user():
            flags |= PTEFlags.USER_SUPERVISOR
        if not self.cacheable:
            flags |= PTEFlags.CACHE_DISABLED
        if not self.is_executable() and fmt.has(PTEFlags.NO_EXECUTE):
            flags |= PTEFlags.NO_EXECUTE
        return fmt.encode(page.paddr() // PAGE_SIZE, flags)

    @fallible
    def map(self, page_directory: PageDirectory, should_flush_tlb: bool = True):
        """Write a PTE for every page. On failure, release what was written and detach."""
        VERIFY(self.page_directory is None, f"region {self.name!r} is already mapped")
        if self.mmap and not self.is_user():
            raise KernelPanic(f"about to map mmap'ed region {self.name!r} at a kernel address")
        self.page_directory = page_directory
        for page_index in range(self.page_count()):
            pte = self._mm.ensure_pte(page_directory, self.vaddr_from_page_index(page_index))
            if pte.is_error():
                self._release_ptes(page_index)
                self.page_directory = None
                return pte
            pte.value().set_raw(self._pte_value(page_index))
        if should_flush_tlb:
            self._mm.flush_tlb(page_directory, self.vaddr(), self.page_count())
        return None

    def remap(self) -> None:
        """Rewrite every PTE after the access or CoW state changed (the tables all exist)."""
        for page_index in range(self.page_count()):
            self._rewrite_pte(page_index)
        self._mm.flush_tlb(self.page_directory, self.vaddr(), self.page_count())

    def remap_vmobject_page(self, index_in_vmobject: int) -> None:
        """Rewrite the PTE of one VMObject page, if this region maps it."""
        page_index = index_in_vmobject - self.first_page_index()
        if 0 <= page_index < self.page_count() and self.page_directory is not None:
            self._rewrite_pte(page_index)
            self._mm.flush_tlb(self.page_directory, self.vaddr_from_page_index(page_index))

    def _rewrite_pte(self, page_index: int) -> None:
        pte = self._mm.pte(self.page_directory, self.vaddr_from_page_index(page_index))
        VERIFY(pte is not None, f"remap of region {self.name!r}: its page table is gone")
        pte.set_raw(self._pte_value(page_index))

    def unmap(self, should_flush_tlb: bool = True) -> None:
        """Clear every PTE (freeing page tables left empty) and detach the directory."""
        VERIFY(self.page_directory is not None, f"region {self.name!r} is not mapped")
        self._release_ptes(self.page_count())
        if should_flush_tlb:
            self._mm.flush_tlb(self.page_directory, self.vaddr(), self.page_count())
        self.page_directory = None

    def _release_ptes(self, count: int) -> None:
        for page_index in range(count):
            self._mm.release_pte(self.page_directory, self.vaddr_from_page_index(page_index),
                                 is_last_pte=page_index == count - 1)

    # Faults --------------------------------------------------------------------------------------

    @fallible
    def handle_fault(self, fault: PageFault):
        """Demand zero or copy-on-write; any other fault is an access violation (EFAULT).
        ErrorOr[str]: the kind of fault resolved (ZERO_FAULT, COW_FAULT, COW_FAULT_LAST_HOLDER
        of anonymous_vmobject), as the handler that resolved it reports it."""
        page_index = (fault.address - self.vaddr()) // PAGE_SIZE
        index_in_vmobject = self.first_page_index() + page_index
        vmobject = self.vmobject
        if fault.is_protection_violation() and fault.is_write() and self.is_writable() \
                and not fault.is_instruction_fetch():
            if vmobject.is_shared_zero(index_in_vmobject):
                kind = TRY(vmobject.handle_zero_fault(index_in_vmobject))
            elif self.should_cow(page_index):
                kind = TRY(vmobject.handle_cow_fault(index_in_vmobject, fault.address))
            else:
                return self._access_violation(fault)
            for region in vmobject.regions:
                region.remap_vmobject_page(index_in_vmobject)
            return kind
        return self._access_violation(fault)

    def _access_violation(self, fault: PageFault) -> Error:
        return Error.from_errno(Errno.EFAULT, f"{fault} in region {self.name!r} "
                                              f"({self.access.describe()})")

    def __repr__(self) -> str:
        where = str(self.range) if self.range is not None else "unplaced"
        return f"Region({self.name!r}, {where}, {self.access.describe()})"
