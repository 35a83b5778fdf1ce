"""kmalloc / kfree: the kernel heap, living in kernel virtual memory.

The heap starts as a small pool inside the kernel image. `enable_expansion` (called once the
MemoryManager is up, as `kmalloc_enable_expand()` is at 24ecf1d0218:
Kernel/Memory/MemoryManager.cpp#L641) creates every page table of the reserved kmalloc range up
front. When no subheap has room, `try_expand` takes the physical pages it needs, then maps them
at the next addresses of the range with `MM.pte()`, which allocates nothing but still quickmaps
the kernel PD: a plain kmalloc() ends up moving the PD window, which is what made the old
ensure_pte() reentrant (lesson 03). This is the real code's order (24ecf1d0218:
Kernel/Heap/kmalloc.cpp#L217-L294).

Each subheap is cut into CHUNK_SIZE-byte chunks; a bitmap says which are in use and an allocation
takes the first run of free chunks that fits. The objects the simulated kernel allocates live in
Python; what kmalloc simulates is the address space, the memory it costs, and its side effects.

Differences from SerenityOS, all kept small on purpose:
- no slab heaps: SerenityOS serves 16..512-byte requests from slabs carved out of 64 KiB blocks
  that are themselves kmalloc'd; here every request goes to the chunk subheaps;
- an expansion is at least SUBHEAP_MIN_PAGES (4) pages instead of
  max(1 MiB, 2 * request + 1 page), so that a lesson sees expansions on a small machine;
- running out of pages or of the range is ENOMEM, where SerenityOS panics ("FIXME: Dare to
  return false");
- the heap gives back: when a kfree empties the most recent expansion, its pages are unmapped
  and freed (the page tables stay). SerenityOS never shrinks its heap. Here it must, so that an
  operation that expanded the heap and then failed leaves no trace (DESIGN rule 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refimpl.ak import TRY, VERIFY, Errno, Error, KernelPanic, check_int, fallible
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
        self._expansion_enabled = False

    @fallible
    def kmalloc(self, size: int):
        """A kernel virtual address of at least `size` free bytes: ErrorOr[VirtualAddress].
        A request that could never fit is ENOMEM before it counts as an allocation."""
        check_int("size", size)
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
                self._give_back_empty_expansions()
                return
        raise KernelPanic(f"kfree({address:#x}): address is not in the kernel heap")

    @fallible
    def enable_expansion(self):
        """Create every page table of the kmalloc range now, so that expansion never has to."""
        mm = self._mm
        for vaddr in range(self._expansion_base, self._expansion_end, 512 * PAGE_SIZE):
            TRY(mm.ensure_pte(mm.kernel_page_directory(), vaddr))
        self._expansion_enabled = True
        return None

    @fallible
    def try_expand(self, allocation_request: int):
        """Map a new subheap big enough for `allocation_request`: all its pages first, then
        their PTEs, which exist already. On failure, nothing has changed."""
        VERIFY(self._expansion_enabled, "kmalloc heap expansion before enable_expansion()")
        size = max(SUBHEAP_MIN_PAGES * PAGE_SIZE, page_round_up(allocation_request))
        base = self._next_expansion_base
        if base + size > self._expansion_end:
            return Error.from_errno(Errno.ENOMEM, "the kmalloc range is exhausted")
        mm = self._mm
        pages: list[PhysicalPage] = []
        for _ in range(size // PAGE_SIZE):
            page = mm.allocate_physical_page(purpose=PagePurpose.KERNEL_HEAP)
            if page.is_error():
                for taken in pages:
                    taken.unref()
                return page
            pages.append(page.value())
        directory = mm.kernel_page_directory()
        for offset, page in zip(range(0, size, PAGE_SIZE), pages):
            pte = mm.pte(directory, base + offset)
            VERIFY(pte is not None, "the kmalloc range has a page table everywhere")
            pte.set_physical_page_base(page.paddr())
            pte.set_global(True)
            pte.set_user_allowed(False)
            pte.set_writable(True)
            pte.set_present(True)
        mm.flush_tlb(directory, base, len(pages))
        self.subheaps.append(KmallocSubheap(VirtualAddress(base), size, pages))
        self._next_expansion_base = base + size
        self.expansions += 1
        return None

    def _give_back_empty_expansions(self) -> None:
        """Unmap and free the most recent expansions while they are empty."""
        mm = self._mm
        directory = mm.kernel_page_directory()
        while len(self.subheaps) > 1 and not self.subheaps[-1].allocated_bytes():
            subheap = self.subheaps.pop()
            for offset in range(0, subheap.size, PAGE_SIZE):
                mm.pte(directory, subheap.base + offset).clear()
            mm.flush_tlb(directory, subheap.base, len(subheap.pages))
            for page in subheap.pages:
                page.unref()
            self._next_expansion_base = subheap.base

    def allocated_bytes(self) -> int:
        return sum(subheap.allocated_bytes() for subheap in self.subheaps)

    def free_bytes(self) -> int:
        return sum(subheap.free_bytes() for subheap in self.subheaps)

    def size(self) -> int:
        return sum(subheap.size for subheap in self.subheaps)
