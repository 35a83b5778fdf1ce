"""RegionTree: the regions of an address space, and the only authority on where they are.

Regions are kept sorted by base address; the free space between them (and before the first and
after the last, within the total range) is found among them, as SerenityOS has done since
ffe2e77eba1 (April 2022): there is no second allocator to keep in sync.

Placement is SerenityOS's, exactly: `_allocate_range_anywhere`, the finder behind
`place_anywhere`, returns what its `try_allocate_anywhere` at ffe2e77eba1 returns, for every
state and request. That is *first fit in address order*: the lowest gap whose size is at least
`size + alignment` (SerenityOS's test, which never uses a hole of exactly `size` bytes; see its
FIXME), the range starting at the gap's base rounded up to `alignment`. Regions therefore pack
back to back, with no guard page. `refimpl.history.region_tree_scan` has SerenityOS's scan
written out; a differential property test holds the two to the same answers.

What differs is the cost. SerenityOS walks every region, O(n). Here the gaps are also kept in a
`GapTree` keyed by base address whose nodes know the largest gap in their subtree (Linux's
`rb_subtree_gap` idea), so the lowest gap of at least N bytes is one descent, O(log n).

Data structures, n regions: the regions are three index-aligned sequences in address order, an
array of bases and an array of ends (machine words, contiguous) and a list of the Region
objects; the gaps are the GapTree. A lookup is one `bisect` over the bases and one comparison
with the end, touching only contiguous memory: at 10^5 regions that stays close to the cost at
10^3, where a list of Python ints or sortedcontainers' positional lookups (an index tree walked
in Python) were three to five times slower. The gap around an address is read off the same
arrays. Cost of each operation: lookups O(log n); _allocate_range_anywhere O(log n) (expected,
the GapTree is a treap); _allocate_range_specific O(log n); insert and remove O(log n) plus an
O(n) move of machine words (memmove: microseconds at 10^5).

The only way in is placement: `place_anywhere` and `place_specifically` find a range and insert
the region in one step, and nothing else inserts. The finders and `_insert` are private, as
SerenityOS made them in e89c9ed2cac ("You can only ask it to place your Region"): a caller that
could find a range and insert later could let another CPU take the range in between (lesson 07).

Locking: the place_* functions, which find a range and insert the region in one step, and
`remove` hold the tree's lock (so do their `*_steps` twins for simulated threads, except the
bare `remove_steps`, whose caller chooses); `get_lock()` hands it out to callers that must keep
the tree still over several calls (the April 2022 stopgap of f0f97e1db02). The later fix wraps
the whole tree in a SpinlockProtected; both forms work with this class.
"""

from __future__ import annotations

import bisect
import random
from array import array

from refimpl.ak import TRY, VERIFY, Errno, Error, KernelPanic, fallible
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.gap_tree import GapTree
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
        self._gaps = GapTree(seed)
        self._gaps.insert(total_range.base, total_range.size)
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

    def gap_index(self) -> GapTree:
        """The gap index itself; for invariant checks."""
        return self._gaps

    def gaps(self) -> list[VirtualRange]:
        """The free ranges in address order."""
        return [VirtualRange(VirtualAddress(base), size) for base, size in self._gaps]

    def _gap_around(self, address: int) -> VirtualRange | None:
        """The free range holding `address`, None if a region holds it. Read off the region
        arrays: it runs from the end of the region below to the base of the region above."""
        index = bisect.bisect_right(self._bases, address) - 1
        if index >= 0 and address < self._ends[index]:
            return None
        base = self._ends[index] if index >= 0 else self.total_range.base
        end = self._bases[index + 1] if index + 1 < len(self._bases) else self.total_range.end
        return VirtualRange(VirtualAddress(base), end - base)

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
    def _allocate_range_anywhere(self, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: first fit, as SerenityOS: the lowest gap of at least
        `size + alignment` bytes, from its base rounded up to `alignment`. Does not insert
        anything. O(log n)."""
        problem = check_request(size, alignment)
        if problem:
            return problem
        # SerenityOS's test (its FIXME: this excludes some valid candidates).
        found = self._gaps.lowest_fitting(size + alignment)
        if found is None:
            return Error.from_errno(Errno.ENOMEM, f"no free range of {size:#x} bytes "
                                                  f"(alignment {alignment:#x})")
        base, _ = found
        return VirtualRange(VirtualAddress(round_up_to_power_of_two(base, alignment)), size)

    @fallible
    def _allocate_range_specific(self, base: int, size: int):
        """ErrorOr[VirtualRange]: exactly `[base, base + size)`, if all of it is free; ENOMEM
        if a region is in the way, as SerenityOS says at ffe2e77eba1 and f0f97e1db02
        (Kernel/Memory/RegionTree.cpp#L99-L101), where Linux would say EEXIST."""
        wanted = TRY(check_specific_request(self.total_range, base, size))
        gap = self._gap_around(base)
        if gap is None or not gap.contains(wanted):
            return Error.from_errno(Errno.ENOMEM, f"{wanted} overlaps an existing region")
        return wanted

    def _allocate_range_randomized(self, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: a random free range (seeded, so reproducible), else
        anywhere."""
        return allocate_randomized(self._random, self.total_range, size, alignment,
                                   self._allocate_range_specific, self._allocate_range_anywhere)

    # Placing and removing regions ------------------------------------------------------------------

    @fallible
    def place_anywhere(self, region: Region, size: int, alignment: int = PAGE_SIZE,
                       randomize: bool = False):
        """Find a range and insert `region` there, in one step under the tree's lock."""
        with self._lock:
            find = self._allocate_range_randomized if randomize else self._allocate_range_anywhere
            self._insert(region, TRY(find(size, alignment)))
        return None

    @fallible
    def place_specifically(self, region: Region, wanted: VirtualRange):
        """Insert `region` at exactly `wanted`, in one step under the tree's lock."""
        with self._lock:
            self._insert(region, TRY(self._allocate_range_specific(wanted.base, wanted.size)))
        return None

    def _insert(self, region: Region, placed: VirtualRange) -> None:
        """Give `region` the range `placed`, which must be free, and add it to the tree."""
        _run_to_completion(self._insert_steps(region, placed))

    def remove(self, region: Region) -> bool:
        """Take `region` out of the tree (it keeps its range); False if it was not in it."""
        with self._lock:
            return _run_to_completion(self._remove_steps(region))

    # The same operations for simulated threads -----------------------------------------------------
    #
    # An insert or a removal changes the gap index and three arrays one after the other; between
    # those writes they disagree, as a red-black tree does between the pointer writes of a
    # rotation. The generators below yield at those points, so that the deterministic scheduler
    # (refimpl.kernel.scheduler) can run another CPU there. `_insert` and `remove` above run the
    # same generators straight through; lookups keep their plain, fast form, and
    # `find_region_containing_steps` is its preemptible twin. Another CPU that reads the tree
    # mid-update gets a wrong answer, or an index that is no longer there (a KernelPanic here, as a
    # torn pointer would crash the real kernel).

    def place_anywhere_steps(self, region: Region, size: int, alignment: int = PAGE_SIZE):
        """place_anywhere for a simulated thread: `error = yield from
        tree.place_anywhere_steps(...)`, None on success. Holds the tree's lock throughout."""
        return (yield from self._placing_steps(
            region, lambda: self._allocate_range_anywhere(size, alignment)))

    def place_specifically_steps(self, region: Region, wanted: VirtualRange):
        """place_specifically for a simulated thread, as place_anywhere_steps."""
        return (yield from self._placing_steps(
            region, lambda: self._allocate_range_specific(wanted.base, wanted.size)))

    def _placing_steps(self, region: Region, find):
        def place():
            found = find()
            if found.is_error():
                return found.error()
            yield from self._insert_steps(region, found.value())
            return None

        yield from self._lock.acquire()
        try:
            return (yield from _torn_reads_panic(place()))
        finally:
            self._lock.unlock()

    def remove_steps(self, region: Region):
        """The bare removal from the tree, for a simulated thread: `removed = yield from ...`.
        It takes no lock: the caller holds the locks it means to (SerenityOS's callers removed
        from `regions()` directly, under locks of their choosing, until da7ea2556e2)."""
        return (yield from _torn_reads_panic(self._remove_steps(region)))

    def find_region_containing_steps(self, address: int):
        """find_region_containing for a simulated thread, preemptible between its walk down the
        tree and its reading of the region found. Takes no lock (the caller's choice)."""
        def walk():
            index = bisect.bisect_right(self._bases, address) - 1
            yield "lookup: found the candidate's index"
            if index < 0 or address >= self._ends[index]:
                return None
            return self._regions[index]
        return (yield from _torn_reads_panic(walk()))

    def regions_steps(self):
        """regions() for a simulated thread, walking in address order with a preemption point
        after each region (an in-order walk of the real tree). Takes no lock (the caller's
        choice); a walk that overlaps an insert can see a region twice or miss one."""
        def walk():
            seen, index = [], 0
            while index < len(self._regions):
                seen.append(self._regions[index])
                yield "walk: visited a region"
                index += 1
            return seen
        return (yield from _torn_reads_panic(walk()))

    def _insert_steps(self, region: Region, placed: VirtualRange):
        VERIFY(region.range is None, f"{region!r} is already placed")
        gap = self._gap_around(placed.base)
        VERIFY(gap is not None and gap.contains(placed), f"{placed} is not free")
        self._gaps.remove(gap.base)
        for piece in gap.carve(placed):
            self._gaps.insert(piece.base, piece.size)
        yield "insert: gap index updated"
        region.range = placed
        index = bisect.bisect_left(self._bases, placed.base)
        self._bases.insert(index, placed.base)
        yield "insert: base linked"
        self._ends.insert(index, placed.end)
        self._regions.insert(index, region)

    def _remove_steps(self, region: Region):
        if region.range is None:
            return False
        base, end = region.range.base, region.range.end
        index = bisect.bisect_left(self._bases, base)
        if index == len(self._regions) or self._regions[index] is not region:
            return False
        below = self._ends[index - 1] if index > 0 else self.total_range.base
        above = self._bases[index + 1] if index + 1 < len(self._bases) else self.total_range.end
        del self._bases[index]
        yield "remove: base unlinked"
        del self._ends[index], self._regions[index]
        yield "remove: region unlinked"
        # The gaps on either side (if any) and the region's range become one gap.
        if below < base:
            self._gaps.remove(below)
        if end < above:
            self._gaps.remove(end)
        self._gaps.insert(below, above - below)
        return True


def _run_to_completion(steps):
    """Run a step generator straight through (plain code: nobody runs in between)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _torn_reads_panic(steps):
    """Run `steps` as kernel code would: an index or key that vanished under it is a crash."""
    try:
        return (yield from steps)
    except (IndexError, KeyError) as torn:
        raise KernelPanic(f"RegionTree changed under this operation: {torn!r}") from torn
