"""ffe2e77eba1 (2022-04-02): SerenityOS's RegionTree, finding holes by walking every region.

02a95a196f0 moved user address spaces off the VirtualRangeAllocator: a free range is now a hole
between two regions of the region tree, found by a scan in address order. An hour later
ffe2e77eba1 moved that code into the new class `Kernel/Memory/RegionTree` and fixed the tail of
the scan. The overlap check of the specific allocation was fixed the next day (9765f9f67ed, then
db75bab4934; 30e6b313b40 removed a check that could no longer fail).

`ScanRegionTree` is that code once fixed: `try_allocate_anywhere` as at ffe2e77eba1 and
`try_allocate_specific` as at 30e6b313b40 (names at ffe2e77eba1; made private in e89c9ed2cac,
renamed `allocate_range_anywhere` and `allocate_range_specific` in 8b01789ec4b). The modern
`refimpl.kernel.RegionTree` must give the same answers as `try_allocate_anywhere` here, in
O(log n) instead of O(n): a differential property test holds them to it, and
`scan_and_index_times` measures both.

The regions sit in an intrusive red-black tree keyed by base address in SerenityOS; here, a list
sorted by base. Like that tree, `insert` checks nothing: keeping regions apart is the allocation
functions' job, which is what the first version's bugs (`holes_first_version`) got wrong.
"""

from __future__ import annotations

import bisect
import time

from refimpl.ak import MUST, Errno, Error, fallible
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.locking import RecursiveSpinlock
from refimpl.kernel.region import Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.virtual_range import (VirtualRange, check_request, check_specific_request,
                                          round_up_to_power_of_two)


class ScanRegionTree:
    def __init__(self, total_range: VirtualRange) -> None:
        self.total_range = total_range
        self._bases: list[int] = []
        self._regions: list[Region] = []
        self._lock = RecursiveSpinlock("RegionTree")

    def get_lock(self) -> RecursiveSpinlock:
        """A lock its own code never takes (the tree had none until e8f543c3908); the modern
        AddressSpace that history modules run this tree under takes it (f0f97e1db02)."""
        return self._lock

    def regions(self) -> list[Region]:
        """The regions in address order."""
        return list(self._regions)

    def __len__(self) -> int:
        return len(self._regions)

    def insert(self, region: Region, placed: VirtualRange) -> None:
        """Give `region` the range `placed` and add it, checking nothing (an intrusive tree)."""
        region.range = placed
        index = bisect.bisect_right(self._bases, placed.base)
        self._bases.insert(index, placed.base)
        self._regions.insert(index, region)

    def remove(self, region: Region) -> None:
        index = self._regions.index(region)
        del self._bases[index], self._regions[index]

    def find_largest_not_above(self, address: int) -> Region | None:
        """The region with the highest base <= `address` (the red-black tree's lookup)."""
        index = bisect.bisect_right(self._bases, address) - 1
        return self._regions[index] if index >= 0 else None

    def find_region_containing(self, address: int) -> Region | None:
        """The region with the highest base at or below `address`, if it holds `address`."""
        region = self.find_largest_not_above(address)
        return region if region is not None and region.range.contains(address) else None

    def next_region(self, region: Region) -> Region | None:
        """The region after `region` in address order (`++it` from `begin_from`)."""
        index = self._regions.index(region) + 1
        return self._regions[index] if index < len(self._regions) else None

    @fallible
    def try_allocate_anywhere(self, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: first fit, walking every region in address order."""
        problem = check_request(size, alignment)
        if problem:
            return problem
        window_start = self.total_range.base

        def allocate_from_window(window: VirtualRange) -> VirtualRange | None:
            # FIXME (SerenityOS's): this check probably excludes valid candidates for large
            # alignments.
            if window.size < size + alignment:
                return None
            aligned_base = round_up_to_power_of_two(window.base, alignment)
            return VirtualRange(VirtualAddress(aligned_base), size)

        for region in self._regions:
            if window_start == region.vaddr():
                window_start = region.range.end
                continue
            window = VirtualRange(window_start, region.vaddr() - window_start)
            window_start = region.range.end
            found = allocate_from_window(window)
            if found is not None:
                return found

        window = VirtualRange(window_start, self.total_range.end - window_start)
        if self.total_range.contains(window):
            found = allocate_from_window(window)
            if found is not None:
                return found
        return Error.from_errno(Errno.ENOMEM, f"failed to allocate anywhere: size={size:#x}, "
                                              f"alignment={alignment:#x}")

    @fallible
    def try_allocate_specific(self, base: int, size: int):
        """ErrorOr[VirtualRange]: exactly `[base, base + size)`, unless a region overlaps it."""
        wanted = check_specific_request(self.total_range, base, size)
        if wanted.is_error():
            return wanted
        wanted = wanted.value()
        region = self.find_largest_not_above(base + size - 1)
        if region is None:
            return wanted  # the range fits below the lowest region
        if region.range.intersects(wanted):
            return Error.from_errno(Errno.ENOMEM, f"{wanted} overlaps {region.range}")
        return wanted


def unbacked_region(mm=None, name: str = "r") -> Region:
    """A Region with no VMObject and no kernel heap object: enough to occupy a range in a tree
    (compare Region::create_unbacked, e8f543c3908)."""
    return Region(mm, None, 0, name, Region.Access.READ, True, False, VirtualAddress(0))


# Measuring the scan against the index ------------------------------------------------------------

def packed_trees(mm, count: int, base: int = 0x100_0000):
    """A ScanRegionTree and a RegionTree holding the same `count` one-page regions, each
    followed by a one-page hole: every hole fails the `size + alignment` test of a one-page
    request, so both must reach the space after the last region (the scan's worst case)."""
    total = VirtualRange(VirtualAddress(base), (2 * count + 64) * PAGE_SIZE)
    scan, index = ScanRegionTree(total), RegionTree(total)
    for i in range(count):
        placed = VirtualRange(VirtualAddress(base + 2 * i * PAGE_SIZE), PAGE_SIZE)
        scan.insert(unbacked_region(mm), placed)
        MUST(index.place_specifically(unbacked_region(mm), placed))
    return scan, index


def scan_and_index_times(mm, counts: list[int], repeat: int = 5) -> dict[str, list[float]]:
    """Seconds per one-page `allocate anywhere` on packed trees of each size in `counts`:
    {"scan": [...], "index": [...]}, best of `repeat`. Both must give the same range."""
    times: dict[str, list[float]] = {"scan": [], "index": []}
    for count in counts:
        scan, index = packed_trees(mm, count)
        # the index's finder itself, private behind place_anywhere since e89c9ed2cac
        for name, allocate in (("scan", scan.try_allocate_anywhere),
                               ("index", index._allocate_range_anywhere)):
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                allocate(PAGE_SIZE)
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
        assert scan.try_allocate_anywhere(PAGE_SIZE).value() == \
            index._allocate_range_anywhere(PAGE_SIZE).value()
    return times
