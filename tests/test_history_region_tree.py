"""Lesson 06's history: the range allocator beside the tree, and the first version's bugs."""

import pytest

from refimpl.ak import MUST
from refimpl.history.holes_first_version import (AddressSpaceAt02a95a196f0, FirstVersionTree,
                                                 OffByOneFixTree, bitmap_model_failure,
                                                 find_counterexample, overlapping_mmaps)
from refimpl.history.range_allocator_beside_tree import (AddressSpaceWithRangeAllocator,
                                                         kmalloc_costs, overrun, two_mappings)
from refimpl.history.region_tree_scan import ScanRegionTree
from refimpl.kernel import AddressSpace, RegionTree, read_user_memory
from refimpl.kernel.invariants import KernelSnapshot

PAGE = 4096


def test_the_range_allocator_kmallocs_for_mmap_split_and_fork(mm):
    assert kmalloc_costs(AddressSpaceWithRangeAllocator, mm) == \
        {"mmap": 2, "munmap that splits": 1, "fork": 10}
    assert kmalloc_costs(AddressSpace, mm) == {"mmap": 0, "munmap that splits": 0, "fork": 0}


def test_fork_copies_one_node_per_free_range(mm):
    space = MUST(AddressSpaceWithRangeAllocator.try_create(mm))
    for _ in range(20):
        MUST(space.allocate_region(PAGE, mmap=True))
    child = MUST(space.try_clone())
    assert child.range_allocator.available_ranges() == space.range_allocator.available_ranges()
    assert len(space.range_allocator.available_ranges()) == 21  # a guard page each, and the tail
    assert [r.range for r in child.region_tree.regions()] == \
        [r.range for r in space.region_tree.regions()]


def test_both_trees_stay_in_sync_through_munmap(mm):
    space = MUST(AddressSpaceWithRangeAllocator.try_create(mm))
    region = MUST(space.allocate_region(4 * PAGE, mmap=True))
    MUST(space.unmap_mmap_range(region.vaddr() + PAGE, PAGE))
    free = space.range_allocator.available_ranges()
    taken = [r.range for r in space.region_tree.regions()]
    assert not any(f.intersects(t) for f in free for t in taken)
    assert sum(f.size for f in free) + sum(t.size for t in taken) == \
        space.range_allocator.total_range.size
    space.destroy()


def test_guard_page_then_none(mm):
    space, first, second = two_mappings(AddressSpaceWithRangeAllocator, mm)
    assert second.vaddr() - first.range.end == PAGE
    assert overrun(space, first).error().code() == 14  # EFAULT: the guard page is not mapped
    assert MUST(read_user_memory(space, second.vaddr(), 8)) == bytes(8)

    space, first, second = two_mappings(AddressSpace, mm)
    assert second.vaddr() == first.range.end
    assert not overrun(space, first).is_error()
    assert MUST(read_user_memory(space, second.vaddr(), 8)) == b"\xAA" * 8


def test_the_first_version_hands_out_the_whole_tail(mm):
    space = MUST(AddressSpaceAt02a95a196f0.try_create(mm))
    assert MUST(space.try_allocate_range(None, PAGE)) == space.region_tree.total_range
    before = KernelSnapshot.take(mm)
    result = space.mmap(PAGE)
    assert result.error().code() == 22 and "past the end of its VMObject" in str(result.error())
    assert KernelSnapshot.take(mm) == before and len(space.region_tree) == 0


def test_the_first_version_overlaps_the_lowest_region_and_loses_a_write(mm):
    space, first, second = overlapping_mmaps(mm)
    assert second.range.intersects(first.range)
    assert MUST(read_user_memory(space, first.vaddr(), 5)) == bytes(5)  # b"hello" is gone


@pytest.mark.parametrize("tree_class, kinds, steps, message", [
    (FirstVersionTree, ("anywhere",), [("anywhere", 1)], "0x8000 bytes, not 0x1000"),
    (FirstVersionTree, ("specific",), [("specific", 1, 1), ("specific", 0, 2)],
     "page 1 is already taken"),
    (OffByOneFixTree, ("specific",), [("specific", 0, 1), ("specific", 1, 1), ("specific", 0, 1)],
     "page 0 is already taken"),
])
def test_the_bitmap_model_finds_each_bug(tree_class, kinds, steps, message):
    found, failure = find_counterexample(tree_class, kinds)
    assert found == steps and message in failure


@pytest.mark.parametrize("tree_class", [ScanRegionTree, RegionTree])
def test_the_fixed_trees_pass_the_bitmap_model(tree_class):
    assert find_counterexample(tree_class) is None


def test_the_bitmap_model_rejects_overlaps_and_wrong_sizes():
    assert bitmap_model_failure(ScanRegionTree, [("specific", 0, 2), ("specific", 1, 1)]) is None
    assert "already taken" in bitmap_model_failure(
        OffByOneFixTree, [("specific", 1, 1), ("specific", 2, 1), ("specific", 1, 1)])
