"""Lesson 07's history (refimpl.history.atomic_place): find-then-insert against one place call,
sys$mmap before 07f3d09c552, at it (ASLR and the hint lost) and after 858b196c595, and the
region a failed map() left in the tree until 4edae21bd13."""

import pytest

from refimpl.ak import MUST
from refimpl.history.atomic_place import (MAP_FIXED, MAP_RANDOMIZED,
                                          AddressSpaceAt07f3d09c552, AddressSpaceBeforePlace,
                                          MemoryManagerBeforePlace, allocations_under,
                                          find_then_insert_steps, place_steps,
                                          sys_mmap_at_07f3d09c552, sys_mmap_at_858b196c595,
                                          sys_mmap_before_place)
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import (PROT_READ, PROT_WRITE, AddressSpace, AllocationKind,
                            AnonymousVMObject, MemoryManager, Program, Region, SimThread,
                            explore, replay)
from refimpl.kernel.invariants import address_space_violations, kernel_region_violations

PAGE = 4096
RW = PROT_READ | PROT_WRITE


def new_kernel(cpus=1):
    return MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=cpus))


# Two threads allocating in one tree -------------------------------------------------------------

def _unplaced_region(space, name):
    vmobject = MUST(AnonymousVMObject.try_create_with_size(space.mm, PAGE))
    region = MUST(Region.try_create_unplaced(space.mm, vmobject, 0, name, Region.Access.READ))
    vmobject.unref()
    return region


def _allocating_threads(space_class, allocate):
    def make():
        mm = new_kernel()
        space = MUST(space_class.try_create(mm))
        threads = [SimThread(name, allocate, space.region_tree, _unplaced_region(space, name),
                             PAGE) for name in ("first", "second")]
        return Program(threads, state=space)
    return make


def test_the_scheduler_finds_two_finds_of_the_same_hole():
    make = _allocating_threads(AddressSpaceBeforePlace, find_then_insert_steps)
    result = explore(make, check=lambda space: not address_space_violations(space))
    assert result.failure is not None and result.failing_schedule.startswith("AB")
    assert "is not free" in result.reason  # the second insert found its range taken
    run = replay(make, result.failing_schedule)
    assert run.panic is not None and run.schedule == result.failing_schedule
    found = [step.label.split(" found ")[1] for step in run.trace if " found " in step.label]
    assert len(found) == 2 and found[0] == found[1]  # both threads found the same range


def test_no_interleaving_of_two_placements_overlaps():
    result = explore(_allocating_threads(AddressSpace, place_steps),
                     check=lambda space: not address_space_violations(space)
                     and len(space.region_tree) == 2)
    assert result.failure is None and result.runs >= 2


def test_the_old_tree_still_answers_where_and_the_new_one_only_places():
    old = MUST(AddressSpaceBeforePlace.try_create(new_kernel())).region_tree
    assert MUST(old.try_allocate_anywhere(PAGE)).base == old.total_range.base
    new = MUST(AddressSpace.try_create(new_kernel())).region_tree
    for name in ("try_allocate_anywhere", "allocate_range_anywhere", "allocate_range_specific",
                 "insert"):
        assert not hasattr(new, name)


# sys$mmap on either side of 07f3d09c552 --------------------------------------------------------

def _mmaps(sys_mmap, space_class, flags, count=6, seed=3):
    space = MUST(space_class.try_create(new_kernel(), seed=seed))
    addresses = [MUST(sys_mmap(space, 0, PAGE, RW, flags)) for _ in range(count)]
    assert address_space_violations(space) == []
    return space, addresses


def _packed(addresses, base):
    return addresses == [base + i * PAGE for i in range(len(addresses))]


@pytest.mark.parametrize("sys_mmap,space_class", [
    (sys_mmap_before_place, AddressSpaceBeforePlace), (sys_mmap_at_858b196c595, AddressSpace)])
def test_map_randomized_scatters_mappings_before_and_after(sys_mmap, space_class):
    space, addresses = _mmaps(sys_mmap, space_class, MAP_RANDOMIZED)
    base = space.region_tree.total_range.base
    assert not _packed(sorted(addresses), base)
    assert max(addresses) - min(addresses) > 1 << 30  # spread over the user range


def test_at_07f3d09c552_map_randomized_is_ignored_and_mappings_pack_from_the_base():
    """The ASLR regression: every MAP_RANDOMIZED mapping goes where first fit puts it, one page
    after the other, so one leaked address gives away all the others."""
    space, addresses = _mmaps(sys_mmap_at_07f3d09c552, AddressSpace, MAP_RANDOMIZED)
    assert _packed(addresses, space.region_tree.total_range.base)


def test_a_free_hint_is_honoured_before_and_ignored_at_07f3d09c552():
    for sys_mmap, space_class, honoured in (
            (sys_mmap_before_place, AddressSpaceBeforePlace, True),
            (sys_mmap_at_07f3d09c552, AddressSpace, False)):
        space = MUST(space_class.try_create(new_kernel()))
        hint = space.region_tree.total_range.base + 64 * PAGE
        assert (MUST(sys_mmap(space, hint, PAGE, RW, 0)) == hint) is honoured
        assert MUST(sys_mmap(space, hint + PAGE, PAGE, RW, MAP_FIXED)) == hint + PAGE


def test_mmap_before_place_refuses_fixed_and_randomized_and_leaves_no_trace():
    space = MUST(AddressSpaceBeforePlace.try_create(new_kernel()))
    result = sys_mmap_before_place(space, 0x100000, PAGE, RW, MAP_FIXED | MAP_RANDOMIZED)
    assert result.error().code() == 22 and len(space.region_tree) == 0


# A failed map() after placement (07f3d09c552 to 4edae21bd13) -----------------------------------

@pytest.mark.parametrize("space_class,dangles", [(AddressSpaceAt07f3d09c552, True),
                                                 (AddressSpace, False)])
def test_a_region_that_fails_to_map_is_freed_but_left_in_the_tree_until_4edae21bd13(
        space_class, dangles):
    mm = new_kernel()
    space = MUST(space_class.try_create(mm))
    heap_before = mm.kmalloc_heap.allocated_bytes()
    mm.allocations.fail_nth(AllocationKind.PHYSICAL_PAGE, 1)  # the page table map() needs
    assert space.allocate_region(PAGE, mmap=True).error().code() == 12
    assert mm.kmalloc_heap.allocated_bytes() == heap_before  # the Region object is freed...
    left = space.region_tree.regions()
    assert bool(left) is dangles  # ... and, before the fix, still in the tree
    if dangles:
        assert space.find_region_containing(left[0].vaddr()) is left[0]  # a use-after-free
        assert left[0] not in left[0].vmobject.regions


# The kernel side: what ran under the lock ----------------------------------------------------

def test_before_e852a69a069_the_region_was_built_and_mapped_under_the_lock():
    before = MemoryManagerBeforePlace(Machine(X86_64, ram_size=16 * MiB))
    locked = allocations_under(before,
                               "MemoryManagerBeforePlace.allocate_kernel_region_with_range")
    assert [record.kind for record in locked] == [AllocationKind.KMALLOC,  # the Region object
                                                  AllocationKind.PHYSICAL_PAGE]  # a page table
    assert kernel_region_violations(before) == []
    after = new_kernel()
    assert allocations_under(after, "RegionTree.place_anywhere") == []
    made_outside = allocations_under(new_kernel(),
                                     "MemoryManager.allocate_kernel_region_with_vmobject")
    assert [record.kind for record in made_outside] == [AllocationKind.KMALLOC,
                                                        AllocationKind.PHYSICAL_PAGE]
    assert [region.range for region in before.region_tree.regions()] == \
        [region.range for region in after.region_tree.regions()]  # the same placement


def test_two_allocating_threads_builds_the_lessons_programs():
    from refimpl.history.atomic_place import two_allocating_threads
    old = explore(two_allocating_threads(AddressSpaceBeforePlace, find_then_insert_steps),
                  check=lambda space: not address_space_violations(space))
    new = explore(two_allocating_threads(AddressSpace, place_steps),
                  check=lambda space: not address_space_violations(space))
    assert old.failing_schedule == "ABAAB" and new.failure is None
