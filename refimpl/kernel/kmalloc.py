"""kmalloc / kfree: the kernel heap, living in kernel virtual memory.

The heap starts as a small pool inside the kernel image. When no subheap has room, `try_expand`
allocates physical pages and maps them, one by one, at the next addresses of a reserved kernel
range with `MM.ensure_pte()`, then adds them as a new subheap. Expansion is the path by which a
plain kmalloc() ends up editing page tables, which is what made the old ensure_pte() reentrant
(lesson 03).

Each subheap is cut into CHUNK_SIZE-byte chunks; a bitmap says which are in use and an allocation
takes the first run of free chunks that fits. The objects the simulated kernel allocates live in
Python; what kmalloc simulates is the address space, the memory it costs, and its side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refimpl.ak import TRY, VERIFY, Errno, Error, KernelPanic, fallible
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress, page_round_up
from refimpl.kernel.allocation import AllocationKind
from refimpl.kernel.physical_page import PagePurpose, PhysicalPage

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager

CHUNK_SIZE = 64
SUBHEAP_MIN_PAGES = 4


class KmallocSubheap:
    """A run of mapped kernel pages handed out in chunks."""

    def __init__(self, base: VirtualAddress, size: int,
                 pages: list[PhysicalPage] | None = None) -> None:
        self.base = base
        self.size = size
        self.pages = pages or []
        self._used = bytearray(size // CHUNK_SIZE)
        self._allocations: dict[int, int] = {}

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size

    def allocated_bytes(self) -> int:
        return sum(self._allocations.values()) * CHUNK_SIZE

    def free_bytes(self) -> int:
        return self._used.count(0) * CHUNK_SIZE

    def allocate(self, size: int) -> VirtualAddress | None:
        chunks = max(1, -(-size // CHUNK_SIZE))
        run = bytes(chunks)
        start = self._used.find(run)
        if start < 0:
            return None
        self._used[start:start + chunks] = b"\x01" * chunks
        self._allocations[start] = chunks
        return VirtualAddress(self.base + start * CHUNK_SIZE)

    def deallocate(self, address: int) -> None:
        start, misaligned = divmod(address - self.base, CHUNK_SIZE)
        chunks = None if misaligned else self._allocations.pop(start, None)
        if chunks is None:
            raise KernelPanic(f"kfree({address:#x}): not an address kmalloc returned, or freed "
                              f"twice")
        self._used[start:start + chunks] = bytes(chunks)


class KmallocHeap:
    def __init__(self, mm: MemoryManager) -> None:
        layout = mm.layout
        self._mm = mm
        self.subheaps = [KmallocSubheap(layout.initial_kmalloc_base,
                                        layout.initial_kmalloc_pages * PAGE_SIZE)]
        self._expansion_base = layout.kmalloc_range_base
        self._next_expansion_base = layout.kmalloc_range_base
        self._expansion_end = layout.kmalloc_range_base + layout.kmalloc_range_size
        self.expansions = 0

    @fallible
    def kmalloc(self, size: int):
        """A kernel virtual address of at least `size` free bytes: ErrorOr[VirtualAddress].
        A request that could never fit is ENOMEM before it counts as an allocation."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int, not {type(size).__name__}: {size!r}")
        if size < 0:
            return Error.from_errno(Errno.EINVAL, f"kmalloc of a negative size ({size})")
        if size > self._expansion_end - self._expansion_base:
            return Error.from_errno(Errno.ENOMEM, f"kmalloc({size:#x}) is larger than the whole "
                                                  f"kmalloc range")
        if self._mm.allocations.note(AllocationKind.KMALLOC, size):
            return Error.from_errno(Errno.ENOMEM, "injected kmalloc failure")
        for subheap in self.subheaps:
            address = subheap.allocate(size)
            if address is not None:
                return address
        TRY(self.try_expand(size))
        address = self.subheaps[-1].allocate(size)
        VERIFY(address is not None, "a fresh subheap could not satisfy the request it was made for")
        return address

    def kfree(self, address: int) -> None:
        if not address:
            return
        for subheap in self.subheaps:
            if subheap.contains(address):
                subheap.deallocate(address)
                return
        raise KernelPanic(f"kfree({address:#x}): address is not in the kernel heap")

    @fallible
    def try_expand(self, allocation_request: int):
        """Map a new subheap big enough for `allocation_request`; on failure undo every step."""
        size = max(SUBHEAP_MIN_PAGES * PAGE_SIZE, page_round_up(allocation_request))
        base = self._next_expansion_base
        if base + size > self._expansion_end:
            return Error.from_errno(Errno.ENOMEM, "the kmalloc range is exhausted")
        pages: list[PhysicalPage] = []
        result = self._map_expansion_pages(base, size, pages)
        if result.is_error():
            self._unmap_expansion_pages(base, pages)
            return result
        self.subheaps.append(KmallocSubheap(VirtualAddress(base), size, pages))
        self._next_expansion_base = base + size
        self.expansions += 1
        return None

    @fallible
    def _map_expansion_pages(self, base: int, size: int, pages: list[PhysicalPage]):
        mm = self._mm
        for offset in range(0, size, PAGE_SIZE):
            page = TRY(mm.allocate_physical_page(purpose=PagePurpose.KERNEL_HEAP))
            pages.append(page)
            pte = TRY(mm.ensure_pte(mm.kernel_page_directory(), base + offset))
            pte.set_physical_page_base(page.paddr())
            pte.set_global(True)
            pte.set_user_allowed(False)
            pte.set_writable(True)
            pte.set_present(True)
        return None

    def _unmap_expansion_pages(self, base: int, pages: list[PhysicalPage]) -> None:
        """Release what a failed expansion mapped, so the heap is exactly as it was."""
        mm = self._mm
        directory = mm.kernel_page_directory()
        last = base + (len(pages) - 1) * PAGE_SIZE
        for offset in range(0, len(pages) * PAGE_SIZE, PAGE_SIZE):
            mm.release_pte(directory, base + offset, is_last_pte=base + offset == last)
        mm.flush_tlb(directory, base, len(pages))
        for page in pages:
            page.unref()

    def allocated_bytes(self) -> int:
        return sum(subheap.allocated_bytes() for subheap in self.subheaps)

    def free_bytes(self) -> int:
        return sum(subheap.free_bytes() for subheap in self.subheaps)

    def size(self) -> int:
        return sum(subheap.size for subheap in self.subheaps)
