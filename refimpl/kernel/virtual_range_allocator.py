"""VirtualRangeAllocator: the free ranges of an address space, before RegionTree replaced it.

Until April 2022 every PageDirectory owned one of these. It keeps the *free* ranges in a tree
sorted by base address; allocating carves a range out of a free one, deallocating puts it back and
merges it with its neighbours. Two of its properties are the reasons it was retired (lesson 06):
- it is a second source of truth next to the region tree, which must be kept in sync by hand;
- it is not intrusive: every tree node is allocated with kmalloc, so allocating *virtual*
  memory allocates *kernel heap*, which can itself need new virtual memory.

Algorithm as in SerenityOS (cbf52d474c9^): first fit in address order, padded with a guard page
on each side (VM_GUARD_PAGES), and a free range is only considered when it is at least
`size + 2 pages + alignment` long. Differences: bad arguments are errors instead of VERIFYs, a
deallocation that overlaps free space is refused (SerenityOS does not check), and new tree nodes
are allocated before the old one is removed, so a failed kmalloc leaves the allocator unchanged.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from sortedcontainers import SortedDict

from refimpl.ak import TRY, Errno, Error, fallible
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress, is_page_aligned
from refimpl.kernel.virtual_range import (ADDRESS_LIMIT, VirtualRange, allocate_randomized, check_request,
                                          check_specific_request, round_up_to_power_of_two)

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager

class VirtualRangeAllocator:
    NODE_SIZE = 56
    """Bytes kmalloc'd per free range (a RedBlackTree node holding a VirtualRange)."""

    def __init__(self, mm: MemoryManager, seed: int = 0) -> None:
        self._mm = mm
        self.total_range = VirtualRange(VirtualAddress(0), 0)
        # base -> (free range, address of its kmalloc'd tree node)
        self._available: SortedDict = SortedDict()
        self._random = random.Random(seed)

    # Tree nodes ----------------------------------------------------------------------------------

    @fallible
    def _allocate_nodes(self, count: int):
        """`count` tree nodes, all or none: ErrorOr[list of node addresses]."""
        nodes = []
        for _ in range(count):
            node = self._mm.kmalloc(self.NODE_SIZE)
            if node.is_error():
                for address in nodes:
                    self._mm.kfree(address)
                return node
            nodes.append(node.value())
        return nodes

    @fallible
    def _replace(self, old_base: int | None, ranges: list[VirtualRange]):
        """Remove the free range at `old_base` (if given) and insert `ranges`, atomically."""
        nodes = TRY(self._allocate_nodes(len(ranges)))
        if old_base is not None:
            self._mm.kfree(self._available.pop(old_base)[1])
        for piece, node in zip(ranges, nodes):
            self._available[piece.base] = (piece, node)
        return None

    # Set-up --------------------------------------------------------------------------------------

    @fallible
    def initialize_with_range(self, base: int, size: int):
        """Make `[base, base + size)` (page-aligned, inside 64 bits) the one free range. Only
        once: a second call would keep the old free ranges and their tree nodes."""
        for name, value in (("base", base), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}: {value!r}")
        problem = self._check_uninitialized()
        if problem:
            return problem
        if base < 0 or size <= 0 or not is_page_aligned(base) or not is_page_aligned(size) or \
                base + size > ADDRESS_LIMIT:
            return Error.from_errno(Errno.EINVAL, f"[{base:#x}, +{size:#x}) is not a non-empty, "
                                                  f"page-aligned range of 64-bit addresses")
        total_range = VirtualRange(VirtualAddress(base), size)
        TRY(self._replace(None, [total_range]))
        self.total_range = total_range
        return None

    @fallible
    def initialize_from_parent(self, parent: VirtualRangeAllocator):
        """Copy the parent's free ranges (fork): one kmalloc per range."""
        problem = self._check_uninitialized()
        if problem:
            return problem
        TRY(self._replace(None, parent.available_ranges()))
        self.total_range = parent.total_range
        return None

    def _check_uninitialized(self) -> Error | None:
        if self.total_range.size or self._available:
            return Error.from_errno(Errno.EBUSY, f"this allocator already manages "
                                                 f"{self.total_range}")
        return None

    def destroy(self) -> None:
        for _, node in self._available.values():
            self._mm.kfree(node)
        self._available.clear()

    def available_ranges(self) -> list[VirtualRange]:
        return [free for free, _ in self._available.values()]

    # Allocation ----------------------------------------------------------------------------------

    @fallible
    def try_allocate_anywhere(self, size: int, alignment: int = PAGE_SIZE):
        """The first fitting range, a guard page away from its neighbours: ErrorOr[VirtualRange]."""
        problem = check_request(size, alignment)
        if problem:
            return problem
        effective_size = size + 2 * PAGE_SIZE  # a guard page on each side
        for free, _ in self._available.values():
            # FIXME in SerenityOS too: this excludes some valid candidates for large alignments.
            if free.size < effective_size + alignment:
                continue
            base = round_up_to_power_of_two(free.base + PAGE_SIZE, alignment)
            allocated = VirtualRange(VirtualAddress(base), size)
            TRY(self._take(free, allocated))
            return allocated
        return Error.from_errno(Errno.ENOMEM, f"no free range of {size:#x} bytes")

    @fallible
    def try_allocate_specific(self, base: int, size: int):
        """Exactly `[base, base + size)`, if all of it is free: ErrorOr[VirtualRange]."""
        allocated = TRY(check_specific_request(self.total_range, base, size))
        free = self._free_range_at_or_below(base)
        if free is None or not free.contains(allocated):
            return Error.from_errno(Errno.EEXIST, f"{allocated} is not entirely free")
        TRY(self._take(free, allocated))
        return allocated

    def try_allocate_randomized(self, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: a random free range (seeded, so reproducible), else
        anywhere."""
        return allocate_randomized(self._random, self.total_range, size, alignment,
                                   self.try_allocate_specific, self.try_allocate_anywhere)

    def _take(self, free: VirtualRange, allocated: VirtualRange):
        """ErrorOr[None]: carve `allocated` out of the free range `free`."""
        return self._replace(free.base, free.carve(allocated))

    def _free_range_at_or_below(self, address: int) -> VirtualRange | None:
        index = self._available.bisect_right(address)
        return self._available.peekitem(index - 1)[1][0] if index else None

    # Deallocation --------------------------------------------------------------------------------

    @fallible
    def deallocate(self, freed: VirtualRange):
        """Give `freed` back, merging it with free neighbours."""
        if freed.is_empty() or not freed.is_page_aligned():
            return Error.from_errno(Errno.EINVAL, f"{freed} is empty or not page-aligned")
        if not self.total_range.contains(freed):
            return Error.from_errno(Errno.EINVAL, f"{freed} is outside {self.total_range}")
        before = self._free_range_at_or_below(freed.base)
        after = self._free_range_at_or_below(freed.end - 1)
        for free in (before, after):
            if free is not None and free.intersects(freed):
                return Error.from_errno(Errno.EINVAL, f"double free: {freed} overlaps the free "
                                                      f"range {free}")
        successor = self._available.get(freed.end)
        if before is not None and before.end == freed.base:
            merged = VirtualRange(before.base, before.size + freed.size)
            self._available[before.base] = (merged, self._available[before.base][1])
        else:
            merged = freed
            TRY(self._replace(None, [freed]))
        if successor is not None:
            grown = VirtualRange(merged.base, merged.size + successor[0].size)
            self._available[merged.base] = (grown, self._available[merged.base][1])
            self._mm.kfree(self._available.pop(successor[0].base)[1])
        return None
