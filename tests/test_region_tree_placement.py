"""RegionTree places exactly where SerenityOS's scan does (ffe2e77eba1), over random histories."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.ak import MUST
from refimpl.history.region_tree_scan import ScanRegionTree, packed_trees, unbacked_region
from refimpl.kernel import RegionTree, VirtualRange
from refimpl.kernel.gap_tree import GapTree
from refimpl.kernel.invariants import gap_tree_violations, region_tree_violations

PAGE = 4096
PAGES = 48
REQUESTS = [(pages, alignment) for pages in (1, 2, 5) for alignment in (1, 4, 16)]

operations = st.lists(st.one_of(
    st.tuples(st.just("anywhere"), st.sampled_from(REQUESTS)),
    st.tuples(st.just("specific"), st.tuples(st.integers(0, PAGES - 1), st.integers(1, 6))),
    st.tuples(st.just("remove"), st.integers(0, 1000)),
), max_size=30)


def answers(result):
    return result.error().code() if result.is_error() else result.value()


def same_answers(index, scan):
    for pages, alignment in REQUESTS:
        ours = index._allocate_range_anywhere(pages * PAGE, alignment * PAGE)
        theirs = scan.try_allocate_anywhere(pages * PAGE, alignment * PAGE)
        assert answers(ours) == answers(theirs), (pages, alignment, index.gaps())


@settings(max_examples=2000)
@given(base_page=st.integers(0, 15), steps=operations)
def test_allocate_range_anywhere_equals_serenityos_scan(base_page, steps):
    """After every step of a random history of placements and removals, both trees give the
    same answer (range, or error) to every request in REQUESTS."""
    total = VirtualRange(0x100_0000 + base_page * PAGE, PAGES * PAGE)
    index, scan = RegionTree(total), ScanRegionTree(total)
    for kind, argument in steps:
        if kind == "anywhere":
            placed = index._allocate_range_anywhere(argument[0] * PAGE, argument[1] * PAGE)
        elif kind == "specific":
            placed = index._allocate_range_specific(total.base + argument[0] * PAGE,
                                                   argument[1] * PAGE)
            assert answers(placed) == answers(scan.try_allocate_specific(
                total.base + argument[0] * PAGE, argument[1] * PAGE)) or placed.is_error()
        else:
            regions = index.regions()
            if regions:
                victim = regions[argument % len(regions)]
                index.remove(victim)
                scan.remove(scan.regions()[argument % len(regions)])
            placed = None
        if placed is not None and not placed.is_error():
            MUST(index.place_specifically(unbacked_region(), placed.value()))
            scan.insert(unbacked_region(), placed.value())
        same_answers(index, scan)
    assert region_tree_violations(index) == []


def test_packed_trees_reach_the_tail(mm):
    scan, index = packed_trees(mm, 50)
    expected = VirtualRange(0x100_0000 + 99 * PAGE, PAGE)
    assert MUST(scan.try_allocate_anywhere(PAGE)) == MUST(index._allocate_range_anywhere(PAGE)) \
        == expected


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 200), st.integers(1, 50)), max_size=60),
       st.integers(1, 60))
def test_gap_tree_descent_finds_the_lowest_fitting_gap(steps, needed):
    gaps, model = GapTree(seed=3), {}
    for add, base, size in steps:
        if add and base not in model:
            gaps.insert(base, size)
            model[base] = size
        elif not add and base in model:
            assert gaps.remove(base) == model.pop(base)
    assert gap_tree_violations(gaps) == []
    assert list(gaps) == sorted(model.items())
    fitting = [item for item in sorted(model.items()) if item[1] >= needed]
    assert gaps.lowest_fitting(needed) == (fitting[0] if fitting else None)


def test_gap_tree_refuses_a_missing_gap_and_stays_whole():
    gaps = GapTree()
    for base in (0, 10, 20):
        gaps.insert(base, base + 1)
    with pytest.raises(KeyError, match="no gap starts at 0xf"):
        gaps.remove(15)
    assert list(gaps) == [(0, 1), (10, 11), (20, 21)] and gap_tree_violations(gaps) == []
    assert gaps.lowest_fitting(11) == (10, 11) and gaps.lowest_fitting(22) is None
