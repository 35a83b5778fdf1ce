"""The checks of lesson 06: one source of truth, RegionTree finding holes."""

from __future__ import annotations

import functools
import random

from refimpl.grading.checks.common import call, passed, range_values, seeds
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.history.region_tree_scan import ScanRegionTree, unbacked_region
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.gap_tree import GapNode, GapTree
from refimpl.kernel.virtual_range import VirtualRange

BASE = 0x100_0000


def random_regions(seed: int) -> tuple[VirtualRange, list[VirtualRange]]:
    """A total range of 24 to 64 pages with a few regions in it, touching or not, in order."""
    rng = random.Random(seed)
    pages = rng.randrange(24, 65)
    total = VirtualRange(BASE + rng.randrange(8) * PAGE_SIZE, pages * PAGE_SIZE)
    regions, page = [], rng.choice([0, 0, 1, 2, 3])
    while page < pages - 1 and len(regions) < 8:
        length = rng.randrange(1, 6)
        if page + length > pages - rng.choice([0, 1, 4]):
            break
        regions.append(VirtualRange(total.base + page * PAGE_SIZE, length * PAGE_SIZE))
        page += length + rng.choice([0, 1, 1, 2, 3, 4, 6])
    return total, regions


def random_request(rng: random.Random) -> tuple[int, int]:
    return (rng.randrange(1, 7) * PAGE_SIZE,
            rng.choice([PAGE_SIZE] * 4 + [2 * PAGE_SIZE, 4 * PAGE_SIZE, 8 * PAGE_SIZE]))


def scan_tree(total: VirtualRange, regions: list[VirtualRange]) -> ScanRegionTree:
    tree = ScanRegionTree(total)
    for placed in regions:
        tree.insert(unbacked_region(), placed)
    return tree


def first_fit(total: VirtualRange, regions: list[VirtualRange], size: int,
              alignment: int) -> VirtualRange | None:
    """The reference: SerenityOS's try_allocate_anywhere at ffe2e77eba1, or None for ENOMEM."""
    result = scan_tree(total, regions).try_allocate_anywhere(size, alignment)
    return None if result.is_error() else result.value()


def _describe(total: VirtualRange, regions: list[VirtualRange]) -> str:
    return f"total {total}, regions [{', '.join(map(str, regions))}]"


@exercise("06-first-fit", "Place a region the way RegionTree does", 3, "allocate_anywhere")
def check_first_fit(allocate_anywhere, hidden=False):
    count = 0
    for seed in seeds(hidden, visible=20, hidden_count=80):
        total, regions = random_regions(seed)
        rng = random.Random(seed)
        for _ in range(4):
            size, alignment = random_request(rng)
            case = f"{_describe(total, regions)}: {size:#x} bytes aligned to {alignment:#x}"
            got = call(allocate_anywhere, total, list(regions), size, alignment, case=case)
            record(case, range_values(got))
            wanted = first_fit(total, regions, size, alignment)
            if got != wanted:
                raise CheckFailed(f"{case}: expected {wanted}, got {got}")
            count += 1
    return passed(count, "requests")


def allocate_specific_reference(total: VirtualRange, regions: list[VirtualRange], base: int,
                                size: int) -> VirtualRange | None:
    result = scan_tree(total, regions).try_allocate_specific(base, size)
    return None if result.is_error() else result.value()


@exercise("06-specific", "Refuse every overlap with one lookup", 2, "allocate_specific")
def check_specific(allocate_specific, hidden=False):
    count = 0
    for seed in seeds(hidden, visible=20, hidden_count=80):
        total, regions = random_regions(seed)
        tree = scan_tree(total, regions)

        def find_largest_not_above(address: int) -> VirtualRange | None:
            region = tree.find_largest_not_above(address)
            return region.range if region is not None else None

        rng = random.Random(seed)
        pages = total.size // PAGE_SIZE
        for _ in range(6):
            length = rng.randrange(1, 6)
            base = total.base + rng.randrange(pages - length + 1) * PAGE_SIZE
            size = length * PAGE_SIZE
            case = f"{_describe(total, regions)}: [{base:#x}, {base + size:#x})"
            got = call(allocate_specific, find_largest_not_above, base, size, case=case)
            record(case, range_values(got))
            wanted = allocate_specific_reference(total, regions, base, size)
            if got != wanted:
                overlapping = [r for r in regions if r.intersects(VirtualRange(base, size))]
                why = f" (it overlaps {overlapping[0]})" if overlapping else " (it is free)"
                raise CheckFailed(f"{case}: expected {wanted}, got {got}{why}")
            count += 1
    return passed(count, "requests")


class WatchedNode:
    """A GapNode as the learner sees it, noting the base of every node reached through
    left/right."""

    __slots__ = ("base", "size", "largest", "_left", "_right", "_reached")

    def __init__(self, node: GapNode, reached: set) -> None:
        self.base, self.size, self.largest = node.base, node.size, node.largest
        self._reached = reached
        self._left = WatchedNode(node.left, reached) if node.left is not None else None
        self._right = WatchedNode(node.right, reached) if node.right is not None else None

    @property
    def left(self):
        if self._left is not None:
            self._reached.add(self._left.base)
        return self._left

    @property
    def right(self):
        if self._right is not None:
            self._reached.add(self._right.base)
        return self._right


def random_gap_tree(seed: int) -> GapTree:
    """40 to 120 gaps of 1 to 12 pages at increasing addresses, a few large ones high up."""
    rng = random.Random(seed)
    gaps = GapTree(seed)
    address = BASE
    count = rng.randrange(40, 121)
    for index in range(count):
        pages = rng.randrange(1, 13) if index < count * 3 // 4 else rng.randrange(1, 40)
        gaps.insert(address, pages * PAGE_SIZE)
        address += (pages + rng.randrange(1, 4)) * PAGE_SIZE
    return gaps


def _height(node: GapNode | None) -> int:
    return 0 if node is None else 1 + max(_height(node.left), _height(node.right))


def lowest_gap_cases(hidden: bool):
    """(case, gap tree, its height, bytes needed) of every search the check makes."""
    for seed in seeds(hidden, visible=12, hidden_count=40):
        gaps, height = _gap_tree_and_height(seed)
        rng = random.Random(seed)
        for needed in sorted({rng.randrange(1, 45) * PAGE_SIZE for _ in range(5)} |
                             {gaps.largest(), gaps.largest() + PAGE_SIZE}):
            case = f"gap tree {seed} ({len(gaps)} gaps, height {height}), needed {needed:#x}"
            yield case, gaps, height, needed


@functools.lru_cache(maxsize=None)
def _gap_tree_and_height(seed: int) -> tuple[GapTree, int]:
    gaps = random_gap_tree(seed)
    return gaps, _height(gaps.root)


def _path_below_root(gaps: GapTree, base: int) -> list[int]:
    """The bases of the nodes from the root's child down to the gap at `base`: a search
    that returns that gap has reached every one of them through left/right."""
    path, node = [], gaps.root
    while node is not None and node.base != base:
        node = node.left if base < node.base else node.right
        if node is not None:
            path.append(node.base)
    return path


def judge_lowest_gap(lines: list) -> str:
    """Trusted (the grader runs it in its own process, on the hidden cases it builds itself):
    each answer is the lowest fitting gap, and the nodes the learner's search reached are at
    most two a level and include the way down to that gap. Different one-descent searches
    reach different nodes, so the reached nodes cannot be compared with the reference's."""
    cases = list(lowest_gap_cases(hidden=True))
    if len(lines) != len(cases):
        raise CheckFailed(f"your function was checked on {len(lines)} searches, the grader's "
                          f"hidden checks have {len(cases)}")
    for line, (case, gaps, height, needed) in zip(lines, cases):
        if not isinstance(line, list) or len(line) != 3 or line[0] != case:
            raise CheckFailed(f"{case}: your answer is missing")
        _, got, reached = line
        wanted = gaps.lowest_fitting(needed)
        if got != (None if wanted is None else list(wanted)):
            raise CheckFailed(f"{case}: expected {wanted and (hex(wanted[0]), hex(wanted[1]))},"
                              f" got {got}")
        if not isinstance(reached, list) or len(reached) > 2 * height:
            raise CheckFailed(f"{case}: right answer, but your function reached "
                              f"{len(reached) if isinstance(reached, list) else reached} nodes; "
                              f"one descent reaches at most {2 * height} (a node and its left "
                              f"child per level)")
        if wanted is not None and not set(_path_below_root(gaps, wanted[0])) <= set(reached):
            raise CheckFailed(f"{case}: your search did not reach the gap it returned")
    return passed(len(cases), "searches, each one descent")


@exercise("06-lowest-gap", "Find the lowest fitting gap in one descent", 3, "lowest_fitting",
          judge=judge_lowest_gap)
def check_lowest_gap(lowest_fitting, hidden=False):
    count = 0
    for case, gaps, height, needed in lowest_gap_cases(hidden):
        reached: set = set()
        root = WatchedNode(gaps.root, reached)
        got = call(lowest_fitting, root, needed, case=case)
        wanted = gaps.lowest_fitting(needed)
        if got is not None:
            got = tuple(got)
        # the bases of the nodes reached, which the grader's judge checks against the tree
        record(case, got, sorted(reached))
        if got != wanted:
            raise CheckFailed(f"{case}: expected {wanted and (hex(wanted[0]), hex(wanted[1]))}"
                              f", got {got}")
        if len(reached) > 2 * height:
            raise CheckFailed(f"{case}: right answer, but your function reached "
                              f"{len(reached)} nodes; one descent reaches at most "
                              f"{2 * height} (a node and its left child per level)")
        count += 1
    return passed(count, "searches, each one descent")


def really_fits_reference(hole: VirtualRange, size: int, alignment: int) -> bool:
    aligned = (hole.base + alignment - 1) & ~(alignment - 1)
    return aligned + size <= hole.end


@exercise("06-quirk", "When does a request really fit a hole?", 2, "really_fits")
def check_really_fits(really_fits, hidden=False):
    count = refused = 0
    for seed in seeds(hidden, visible=40, hidden_count=200):
        rng = random.Random(seed)
        size, alignment = random_request(rng)
        base = BASE + rng.randrange(32) * PAGE_SIZE
        hole = VirtualRange(base, max(PAGE_SIZE, size + rng.randrange(-2, alignment // PAGE_SIZE
                                                                       + 2) * PAGE_SIZE))
        case = f"really_fits({hole}, {size:#x}, {alignment:#x})"
        got = call(really_fits, hole, size, alignment, case=case)
        record(case, got)
        wanted = really_fits_reference(hole, size, alignment)
        if got != wanted:
            raise CheckFailed(f"{case}: expected {wanted}, got {got}")
        refused += wanted and hole.size < size + alignment
        count += 1
    return passed(count, f"holes; SerenityOS's size + alignment test refuses {refused} of the "
                         f"ones that really fit")
