"""RegionTree: lookup and allocate_range_anywhere at 10^3, 10^4 and 10^5 regions, against
SerenityOS's first-fit scan.

    .venv/bin/python benchmarks/bench_region_tree.py

Each tree holds n one-page regions with a one-page hole after each. A one-page request needs a
hole of `size + alignment` = two pages (SerenityOS's test), so every hole is too small and only
the space after the last region can take it: the worst case for the scan, which must look at
every region. The scan is `refimpl.history.region_tree_scan.ScanRegionTree`, SerenityOS's
`try_allocate_anywhere` at ffe2e77eba1, over the same regions; both return the same range.
The allocate_range_anywhere rows time the finder behind `place_anywhere`
(`_allocate_range_anywhere`, private since e89c9ed2cac: kernel code can only place).
Goals (issue #8): allocate_range_anywhere at 10^5 at least 50x faster than the scan, and within
2x of its own time at 10^3; lookup at 10^5 <= 2x lookup at 10^3 (issue #3).
"""

from __future__ import annotations

import random

from refimpl.ak import MUST
from refimpl.history.region_tree_scan import packed_trees
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MemoryManager

from timing import interleaved, report

PAGE = 4096
SIZES = (1_000, 10_000, 100_000)
BASE = 0x100_0000


def main() -> None:
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    trees = {count: packed_trees(mm, count, BASE) for count in SIZES}
    rng = random.Random(1)
    lookups = {count: [BASE + rng.randrange(2 * count * PAGE) for _ in range(20_000)]
               for count in SIZES}
    for count, (scan, tree) in trees.items():
        tail = BASE + (2 * count - 1) * PAGE
        assert MUST(tree._allocate_range_anywhere(PAGE)).base == tail
        assert MUST(scan.try_allocate_anywhere(PAGE)).base == tail

    functions = {}
    for count, (scan, tree) in trees.items():
        functions[f"lookup {count}"] = (tree.find_region_containing, lookups[count])
        functions[f"anywhere {count}"] = (tree._allocate_range_anywhere, [PAGE] * 5000)
        functions[f"scan {count}"] = (scan.try_allocate_anywhere, [PAGE] * (200_000 // count))
    times = interleaved(functions, rounds=7)

    rows = []
    smallest = SIZES[0]
    for count in SIZES:
        rows.append((f"find_region_containing, {count} regions", times[f"lookup {count}"],
                     times[f"lookup {smallest}"], "vs 10^3 regions; goal at 10^5: <= 2x"))
    for count in SIZES:
        rows.append((f"allocate_range_anywhere, {count} regions", times[f"anywhere {count}"],
                     times[f"anywhere {smallest}"], "vs 10^3 regions; goal at 10^5: <= 2x"))
    for count in SIZES:
        scan, ours = times[f"scan {count}"], times[f"anywhere {count}"]
        rows.append((f"first-fit scan, {count} regions", scan, scan, "floor"))
        rows.append((f"allocate_range_anywhere, {count} regions", ours, scan,
                     f"{scan / ours:.0f}x faster; goal at 10^5: >= 50x"))
    report(rows)


if __name__ == "__main__":
    main()
