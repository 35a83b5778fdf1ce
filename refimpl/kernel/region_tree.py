"""RegionTree: the regions of an address space, and the only authority on where they are.

Regions are kept sorted by base address. Besides the regions, the tree keeps the *gaps* between
them (and before the first and after the last, within the total range), indexed two ways: by base
address, and by (size, base). That second index is what SerenityOS does not have: its
`allocate_range_anywhere` walks every region looking for the first hole that fits, O(n); here the
smallest gap that fits is found by one binary search, O(log n).

Placement policy, therefore: *best fit*, the smallest gap that can hold the request, lowest
address among equals; the range starts at the gap's first suitably aligned address. In an empty
or densely packed address space this packs regions one after another from the bottom, as
SerenityOS's first fit does; they differ only when several holes could take the request. To be
found by size alone, a gap must hold the request even from its worst-aligned base, so it needs
`alignment - PAGE_SIZE` spare bytes: none for the usual page alignment, where SerenityOS's
`size + alignment` test wants one page more (its quirk #4).

Data structures, n regions: the regions are three index-aligned sequences in address order, an
array of bases and an array of ends (machine words, contiguous) and a list of the Region
objects; the gaps are sortedcontainers' SortedDict and SortedList. A lookup is one `bisect` over
the bases and one comparison with the end, touching only contiguous memory: at 10^5 regions that
stays close to the cost at 10^3, where a list of Python ints or sortedcontainers' positional
lookups (an index tree walked in Python) were three to five times slower. Cost of each
operation: lookups O(log n); allocate_range_anywhere and allocate_range_specific O(log n);
insert and remove O(log n) plus an O(n) move of machine words (memmove: microseconds at 10^5).

Locking: the place_* functions, which find a range and insert the region in one step, and
`remove` hold the tree's lock; `get_lock()` hands it out to callers that must keep the tree still
over several calls (the April 2022 stopgap of f0f97e1db02). The later fix wraps the whole tree in
a SpinlockProtected; both forms work with this class.
"""

from __future__ import annotations

import bisect
import random
from array import array

from sortedcontainers import SortedDict, SortedList

from refimpl.ak import TRY, VERIFY, Errno, Error, fallible
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.locking import RecursiveSpinlock
from refimpl.kernel.region import Region
from refimpl.kernel.virtual_range import (VirtualRange, allocate_randomized, check_request,
                                          check_specific_request, round_up_to_power_of_two)


class RegionTree:
    def __init__(self, total_range: VirtualRange, seed: int = 0) -> None:
        VERIFY(total_range.is_page_aligned() and not total_range.is_empty(),
               f"a RegionTree's total range must be page-aligned and non-empty: {total_range}")
        self.total_range = total_range
        self._bases = array("Q")  # sorted
        self._ends = array("Q")
        self._regions: list[Region] = []
        self._gaps: SortedDict = SortedDict()  # base -> size
        self._gaps_by_size = SortedList()  # (size, base)
        self._add_gap(total_range.base, total_range.size)
        self._lock = RecursiveSpinlock("RegionTree")
        self._random = random.Random(seed)

    def get_lock(self) -> RecursiveSpinlock:
        return self._lock

    def regions(self) -> list[Region]:
        """The regions in address order."""
        return list(self._regions)

    def __len__(self) -> int:
        return len(self._regions)

    def keyed_regions(self) -> list[tuple[int, Region]]:
        """(key, region) pairs as the tree stores them, in key order; for invariant checks."""
        return list(zip(self._bases, self._regions))

    def gaps_by_size(self) -> list[tuple[int, int]]:
        """The size index of the gaps, (size, base) in order; for invariant checks."""
        return list(self._gaps_by_size)

    def gaps(self) -> list[VirtualRange]:
        """The free ranges in address order."""
        return [VirtualRange(VirtualAddress(base), size) for base, size in self._gaps.items()]

    # Gap bookkeeping -----------------------------------------------------------------------------

    def _add_gap(self, base: int, size: int) -> None:
        if size:
            self._gaps[base] = size
            self._gaps_by_size.add((size, base))

    def _remove_gap(self, base: int) -> int:
        size = self._gaps.pop(base)
        self._gaps_by_size.remove((size, base))
        return size

    def _gap_containing(self, address: int) -> VirtualRange | None:
        index = self._gaps.bisect_right(address) - 1
        if index < 0:
            return None
        base, size = self._gaps.peekitem(index)
        gap = VirtualRange(VirtualAddress(base), size)
        return gap if gap.contains(address) else None

    # Lookup ----------------------------------------------------------------------------------------

    def find_region_containing(self, what: int | VirtualRange) -> Region | None:
        """The region holding an address, or wholly holding a range; None if there is none."""
        if isinstance(what, VirtualRange):
            base, end = what.base, what.base + what.size
        else:
            base, end = what, what + 1
        index = bisect.bisect_right(self._bases, base) - 1
        if index < 0 or end > self._ends[index]:
            return None
        return self._regions[index]

    def find_regions_intersecting(self, wanted: VirtualRange) -> list[Region]:
        """Every region overlapping `wanted`, in address order: the one that starts below it
        (if it reaches in) and all that start inside it."""
        first = max(bisect.bisect_right(self._bases, wanted.base) - 1, 0)
        if first < len(self._ends) and self._ends[first] <= wanted.base:
            first += 1  # the region below the range ends before it
        last = bisect.bisect_left(self._bases, wanted.base + wanted.size)
        return self._regions[first:last]

    # Finding ranges --------------------------------------------------------------------------------

    @fallible
    def allocate_range_anywhere(self, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: the best-fitting free range. Does not insert anything."""
        problem = check_request(size, alignment)
        if problem:
            return problem
        # Any gap this long fits, whatever its (page-aligned) base: aligning costs at most
        # alignment - PAGE_SIZE bytes.
        needed = size + alignment - PAGE_SIZE
        index = self._gaps_by_size.bisect_left((needed, 0))
        if index == len(self._gaps_by_size):
            return Error.from_errno(Errno.ENOMEM, f"no free range of {size:#x} bytes "
                                                  f"(alignment {alignment:#x})")
        _, base = self._gaps_by_size[index]
        return VirtualRange(VirtualAddress(round_up_to_power_of_two(base, alignment)), size)

    @fallible
    def allocate_range_specific(self, base: int, size: int):
        """ErrorOr[VirtualRange]: exactly `[base, base + size)`, if all of it is free."""
        wanted = TRY(check_specific_request(self.total_range, base, size))
        gap = self._gap_containing(base)
        if gap is None or not gap.contains(wanted):
            return Error.from_errno(Errno.EEXIST, f"{wanted} overlaps an existing region")
        return wanted

    def allocate_range_randomized(self, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: a random free range (seeded, so reproducible), else
        anywhere."""
        return allocate_randomized(self._random, self.total_range, size, alignment,
                                   self.allocate_range_specific, self.allocate_range_anywhere)

    # Placing and removing regions ------------------------------------------------------------------

    @fallible
    def place_anywhere(self, region: Region, size: int, alignment: int = PAGE_SIZE,
                       randomize: bool = False):
        """Find a range and insert `region` there, in one step under the tree's lock."""
        with self._lock:
            find = self.allocate_range_randomized if randomize else self.allocate_range_anywhere
            self.insert(region, TRY(find(size, alignment)))
        return None

    @fallible
    def place_specifically(self, region: Region, wanted: VirtualRange):
        """Insert `region` at exactly `wanted`, in one step under the tree's lock."""
        with self._lock:
            self.insert(region, TRY(self.allocate_range_specific(wanted.base, wanted.size)))
        return None

    def insert(self, region: Region, placed: VirtualRange) -> None:
        """Give `region` the range `placed`, which must be free, and add it to the tree."""
        VERIFY(region.range is None, f"{region!r} is already placed")
        gap = self._gap_containing(placed.base)
        VERIFY(gap is not None and gap.contains(placed), f"{placed} is not free")
        self._remove_gap(gap.base)
        self._add_gap(gap.base, placed.base - gap.base)
        self._add_gap(placed.end, gap.end - placed.end)
        region.range = placed
        index = bisect.bisect_left(self._bases, placed.base)
        self._bases.insert(index, placed.base)
        self._ends.insert(index, placed.end)
        self._regions.insert(index, region)

    def remove(self, region: Region) -> bool:
        """Take `region` out of the tree (it keeps its range); False if it was not in it."""
        with self._lock:
            if region.range is None:
                return False
            base, end = region.range.base, region.range.end
            index = bisect.bisect_left(self._bases, base)
            if index == len(self._regions) or self._regions[index] is not region:
                return False
            del self._bases[index], self._ends[index], self._regions[index]
            before = self._gap_containing(base - 1) if base > self.total_range.base else None
            if before is not None:
                base = before.base
                self._remove_gap(before.base)
            if end in self._gaps:
                end += self._remove_gap(end)
            self._add_gap(base, end - base)
            return True
