"""RegionTree: lookup and allocate_range_anywhere at 10^3, 10^4 and 10^5 regions.

    .venv/bin/python benchmarks/bench_region_tree.py

Each tree holds n one-page regions with a one-page gap after each, so every hole is one page and
only the space after the last region can take a two-page request: the worst case for a first-fit
scan, which must look at every region. The scan, SerenityOS's algorithm (reference §14.1), is
written out below and timed in the same rounds.
Goals (issue #3): lookup at 10^5 <= 2x lookup at 10^3; allocate_range_anywhere at 10^5 at least
50x faster than the scan.
"""

from __future__ import annotations

import random

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MemoryManager, Region, RegionTree, VirtualRange
from refimpl.kernel.address import VirtualAddress

from timing import interleaved, report

PAGE = 4096
SIZES = (1_000, 10_000, 100_000)
BASE = 0x100_0000


def build_tree(mm: MemoryManager, count: int) -> RegionTree:
    """`count` one-page regions, each followed by a one-page hole. The Region objects are made
    directly (no kmalloc, no VMObject): this benchmark measures the tree alone."""
    tree = RegionTree(VirtualRange(VirtualAddress(BASE), (2 * count + 64) * PAGE))
    for i in range(count):
        region = Region(mm, None, 0, "r", Region.Access.READ, True, False, VirtualAddress(0))
        tree.insert(region, VirtualRange(VirtualAddress(BASE + 2 * i * PAGE), PAGE))
    return tree


def first_fit_scan(tree: RegionTree, size: int, alignment: int = PAGE) -> VirtualRange | None:
    """SerenityOS's allocate_range_anywhere: walk the regions in order, take the first hole
    of at least size + alignment bytes."""
    window_start = tree.total_range.base
    for region in tree.regions():
        if region.range.base == window_start:
            window_start = region.range.end
            continue
        hole_size = region.range.base - window_start
        if hole_size >= size + alignment:
            return VirtualRange(VirtualAddress(window_start), size)
        window_start = region.range.end
    if tree.total_range.end - window_start >= size + alignment:
        return VirtualRange(VirtualAddress(window_start), size)
    return None


def main() -> None:
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    trees = {count: build_tree(mm, count) for count in SIZES}
    rng = random.Random(1)
    lookups = {count: [BASE + rng.randrange(2 * count * PAGE) for _ in range(20_000)]
               for count in SIZES}
    for count, tree in trees.items():
        assert MUST(tree.allocate_range_anywhere(2 * PAGE)).base == BASE + (2 * count - 1) * PAGE
        assert first_fit_scan(tree, 2 * PAGE).base == BASE + (2 * count - 1) * PAGE

    functions = {}
    for count, tree in trees.items():
        functions[f"lookup {count}"] = (tree.find_region_containing, lookups[count])
        functions[f"anywhere {count}"] = (
            lambda size, tree=tree: tree.allocate_range_anywhere(size), [2 * PAGE] * 2000)
        functions[f"scan {count}"] = (lambda size, tree=tree: first_fit_scan(tree, size),
                                      [2 * PAGE] * (200_000 // count))
    times = interleaved(functions, rounds=7)

    rows = []
    smallest = SIZES[0]
    for count in SIZES:
        rows.append((f"find_region_containing, {count} regions", times[f"lookup {count}"],
                     times[f"lookup {smallest}"], "vs 10^3 regions; goal at 10^5: <= 2x"))
    for count in SIZES:
        scan, ours = times[f"scan {count}"], times[f"anywhere {count}"]
        rows.append((f"first-fit scan, {count} regions", scan, scan, "floor"))
        rows.append((f"allocate_range_anywhere, {count} regions", ours, scan,
                     f"{scan / ours:.0f}x faster; goal at 10^5: >= 50x"))
    report(rows)


if __name__ == "__main__":
    main()
