import pytest

from refimpl.ak import MUST
from refimpl.hw import X86_64, Access, Machine, MiB, PageFault
from refimpl.kernel import (PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, AddressSpace,
                            AllocationKind, AllocationStrategy, AnonymousVMObject,
                            MemoryManager, PagePurpose, VirtualRange, read_user_memory,
                            write_user_memory)
from refimpl.kernel.invariants import (KernelSnapshot, address_space_violations,
                                       page_table_refcount_violations,
                                       physical_page_violations)
from tests.kernel_helpers import sweep_allocation_failures

PAGE = 4096
RW = PROT_READ | PROT_WRITE


def new_kernel(cpus=1):
    return MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=cpus))


@pytest.fixture
def space():
    return MUST(AddressSpace.try_create(new_kernel()))


def check(space):
    assert address_space_violations(space) == []
    assert page_table_refcount_violations(space.mm) == []


def test_demand_zero_maps_the_zero_page_read_only_until_written(space):
    region = MUST(space.allocate_region(2 * PAGE, name="heap"))
    mm = space.mm
    assert region.physical_page(0) is mm.shared_zero_page
    assert MUST(read_user_memory(space, region.vaddr(), 4)) == bytes(4)
    assert region.physical_page(0) is mm.shared_zero_page, "reading allocates nothing"
    MUST(write_user_memory(space, region.vaddr() + 10, b"hi"))
    page = region.physical_page(0)
    assert page is not mm.shared_zero_page and page.purpose is PagePurpose.USER
    assert region.physical_page(1) is mm.shared_zero_page
    assert MUST(read_user_memory(space, region.vaddr() + 10, 2)) == b"hi"
    check(space)


def test_fork_shares_pages_copy_on_write(space):
    region = MUST(space.allocate_region(2 * PAGE, name="data"))
    MUST(write_user_memory(space, region.vaddr(), b"parent"))
    page = region.physical_page(0)
    child = MUST(space.try_clone())
    child_region = child.find_region_containing(region.vaddr())
    assert child_region.physical_page(0) is page and page.ref_count() == 2
    check(space), check(child)
    MUST(write_user_memory(child, region.vaddr(), b"child!"))
    assert child_region.physical_page(0) is not page and page.ref_count() == 1
    assert MUST(read_user_memory(space, region.vaddr(), 6)) == b"parent"
    assert MUST(read_user_memory(child, region.vaddr(), 6)) == b"child!"
    MUST(write_user_memory(space, region.vaddr(), b"again!"))  # last holder: no copy
    assert region.physical_page(0) is page
    check(space), check(child)


def test_shared_regions_stay_shared_across_fork(space):
    vmobject = MUST(AnonymousVMObject.try_create_with_size(space.mm, PAGE,
                                                           AllocationStrategy.ALLOCATE_NOW))
    region = MUST(space.allocate_region_with_vmobject(PAGE, vmobject, 0, shared=True))
    vmobject.unref()
    child = MUST(space.try_clone())
    MUST(write_user_memory(child, region.vaddr(), b"seen by both"))
    assert MUST(read_user_memory(space, region.vaddr(), 12)) == b"seen by both"


def test_munmap_punches_a_hole_and_leaves_no_pte(space):
    region = MUST(space.allocate_region(5 * PAGE, mmap=True))
    base = region.vaddr()
    MUST(write_user_memory(space, base + 3 * PAGE, b"kept"))
    MUST(space.unmap_mmap_range(base + PAGE, 2 * PAGE))
    assert [r.range for r in space.region_tree.regions()] == [
        VirtualRange(base, PAGE), VirtualRange(base + 3 * PAGE, 2 * PAGE)]
    assert MUST(read_user_memory(space, base + 3 * PAGE, 4)) == b"kept"
    assert space.mm.pte(space.page_directory, base + PAGE).raw() == 0
    error = read_user_memory(space, base + PAGE, 1).error()
    assert error.code() == 14 and "no region" in repr(error)
    check(space)


def test_munmap_across_regions_and_of_nothing(space):
    a = MUST(space.allocate_region(3 * PAGE, mmap=True))
    b = MUST(space.allocate_region(PAGE, mmap=True))
    assert b.vaddr() == a.range.end
    MUST(space.unmap_mmap_range(a.vaddr() + 2 * PAGE, 2 * PAGE))  # the (b) case of §14.2
    assert [r.range for r in space.region_tree.regions()] == [VirtualRange(a.vaddr(), 2 * PAGE)]
    MUST(space.unmap_mmap_range(a.vaddr() + 8 * PAGE, PAGE))
    check(space)


def test_mprotect_splits_and_refuses_write_execute(space):
    region = MUST(space.allocate_region(3 * PAGE, mmap=True))
    base = region.vaddr()
    MUST(space.mprotect(base + PAGE, PAGE, PROT_READ))
    accesses = [r.access.describe() for r in space.region_tree.regions()]
    assert accesses == ["rw-", "r--", "rw-"]
    assert write_user_memory(space, base + PAGE, b"x").error().code() == 14
    MUST(write_user_memory(space, base, b"x"))
    assert space.mprotect(base, PAGE, PROT_WRITE | PROT_EXEC).error().code() == 22
    assert space.mprotect(base, 4 * PAGE, PROT_READ).error().code() == 12  # not all mapped
    assert space.mprotect(base + 8 * PAGE, PAGE, PROT_READ).error().code() == 22
    MUST(space.mprotect(base, 3 * PAGE, PROT_NONE))
    assert read_user_memory(space, base, 1).error().code() == 14
    check(space)


def test_non_mmap_regions_refuse_munmap_and_mprotect(space):
    region = MUST(space.allocate_region(PAGE))
    assert space.unmap_mmap_range(region.vaddr(), PAGE).error().code() == 1  # EPERM
    assert space.mprotect(region.vaddr(), PAGE, PROT_READ).error().code() == 1


def test_bad_input_changes_nothing(space):
    MUST(space.allocate_region(2 * PAGE, mmap=True))
    mm = space.mm
    before = KernelSnapshot.take(mm, (space,))
    base = space.region_tree.total_range.base
    kernel = mm.layout.kernel_mapping_base
    results = [
        space.allocate_region(0),
        space.allocate_region(PAGE, address=base + 1),
        space.allocate_region(PAGE, address=base),  # overlaps
        space.allocate_region(PAGE, address=kernel),  # outside the user range
        space.allocate_region(PAGE, alignment=3 * PAGE),
        space.unmap_mmap_range(base, 0),
        space.unmap_mmap_range(kernel, PAGE),
        space.mprotect(kernel, PAGE, PROT_READ),
        space.unmap_mmap_range(0xFFFF_FFFF_FFFF_F000, 0x2000),
    ]
    assert [r.error().code() for r in results] == [22, 22, 12, 12, 22, 22, 14, 14, 22]
    region = space.region_tree.regions()[0]
    MUST(space.deallocate_region(region))
    assert space.deallocate_region(region).error().code() == 2  # ENOENT: freed already
    MUST(space.allocate_region(2 * PAGE, mmap=True))
    assert KernelSnapshot.take(mm, (space,)).free_pages == before.free_pages


def test_faults_outside_regions_and_kernel_addresses(space):
    mm = space.mm
    fault = PageFault(mm.layout.kernel_load_base, Access.USER)
    assert space.handle_page_fault(fault).error().code() == 14
    region = MUST(space.allocate_region(PAGE, prot=PROT_READ))
    assert write_user_memory(space, region.vaddr(), b"x").error().code() == 14


def test_teardown_returns_every_page():
    mm = new_kernel()
    warm = MUST(AddressSpace.try_create(mm))  # grow the kernel heap once
    warm.destroy()
    free = mm.free_physical_pages()
    space = MUST(AddressSpace.try_create(mm))
    region = MUST(space.allocate_region(64 * PAGE, mmap=True))
    for page in range(0, 64, 3):
        MUST(write_user_memory(space, region.vaddr() + page * PAGE, b"data"))
    child = MUST(space.try_clone())
    MUST(write_user_memory(child, region.vaddr(), b"copy"))
    MUST(space.mprotect(region.vaddr() + 5 * PAGE, 10 * PAGE, PROT_READ))
    child.destroy()
    space.destroy()
    assert mm.free_physical_pages() == free
    assert physical_page_violations(mm) == []


# Every allocation point of each operation, failed in turn ------------------------------------

def _space_with(regions=((8, True),), touched=()):
    mm = new_kernel()
    space = MUST(AddressSpace.try_create(mm))
    made = [MUST(space.allocate_region(pages * PAGE, mmap=mmap)) for pages, mmap in regions]
    for page in touched:
        MUST(write_user_memory(space, made[0].vaddr() + page * PAGE, b"x"))
    return mm, space, made


def test_every_failure_of_allocate_region_leaves_no_trace():
    def setup():
        mm, space, _ = _space_with(())
        return mm, lambda: space.allocate_region(4 * PAGE, mmap=True), [space]

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] == 2 and counts[AllocationKind.PHYSICAL_PAGE] == 1


def test_every_failure_of_munmap_splitting_leaves_no_trace():
    def setup():
        mm, space, (region, other) = _space_with(((8, True), (4, True)), touched=(2,))
        # punch one hole in the first region and cut the second: three new regions
        return mm, lambda: space.unmap_mmap_range(region.vaddr() + 2 * PAGE, 8 * PAGE), [space]

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] == 2


def test_every_failure_of_mprotect_leaves_no_trace():
    def setup():
        mm, space, (region,) = _space_with(touched=(3,))
        return mm, lambda: space.mprotect(region.vaddr() + 2 * PAGE, 2 * PAGE, PROT_READ), [space]

    assert sweep_allocation_failures(setup)[AllocationKind.KMALLOC] == 3


def test_every_failure_of_fork_leaves_no_trace():
    def setup():
        mm, space, _ = _space_with(((4, True), (2, False)), touched=(0, 1))
        return mm, lambda: space.try_clone(), [space]

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] > 4 and counts[AllocationKind.PHYSICAL_PAGE] > 128


def test_every_failure_of_page_fault_handling_leaves_no_trace():
    def zero_fault():
        mm, space, (region,) = _space_with()
        return mm, lambda: write_user_memory(space, region.vaddr(), b"x"), [space]

    def cow_fault():
        mm, space, (region,) = _space_with(touched=(0,))
        child = MUST(space.try_clone())
        return mm, lambda: write_user_memory(child, region.vaddr(), b"x"), [space, child]

    assert sweep_allocation_failures(zero_fault)[AllocationKind.PHYSICAL_PAGE] == 1
    assert sweep_allocation_failures(cow_fault)[AllocationKind.PHYSICAL_PAGE] == 1


def test_prot_none_pages_keep_their_page_table_for_a_later_mprotect(space):
    """Found by the state machine: a PROT_NONE region's page table was freed when a neighbour
    was unmapped, and mprotect then had no table to rewrite."""
    hidden = MUST(space.allocate_region(2 * PAGE, prot=PROT_NONE, mmap=True))
    neighbour = MUST(space.allocate_region(PAGE, mmap=True))
    MUST(space.unmap_mmap_range(neighbour.vaddr(), PAGE))
    MUST(space.mprotect(hidden.vaddr(), PAGE, PROT_READ))
    assert MUST(read_user_memory(space, hidden.vaddr(), 1)) == b"\0"
    assert read_user_memory(space, hidden.vaddr() + PAGE, 1).error().code() == 14
    check(space)


# m_lock, taken where SerenityOS takes it at f0f97e1db02 ---------------------------------------

def test_the_address_space_lock_guards_placement_removal_and_lookup(space):
    """With m_lock held by another context (another CPU), each of these would have to wait:
    plain code cannot, so it panics naming the lock. The tree's lock alone is not enough for
    lookups and removals either: they take it inside m_lock."""
    from refimpl.ak import KernelPanic
    from refimpl.kernel.locking import ExecutionContext, running_as

    region = MUST(space.allocate_region(2 * PAGE, mmap=True))
    other_cpu = ExecutionContext("other CPU")
    calls = {
        "allocate_region": lambda: space.allocate_region(PAGE),
        "take_region": lambda: space.take_region(region),
        "find_region_containing": lambda: space.find_region_containing(region.vaddr()),
        "find_region_from_range": lambda: space.find_region_from_range(region.range),
        "find_regions_intersecting": lambda: space.find_regions_intersecting(region.range),
        "munmap (split)": lambda: space.unmap_mmap_range(region.vaddr(), PAGE),
    }
    for lock in (space.get_lock(), space.region_tree.get_lock()):
        with running_as(other_cpu):
            lock.lock()
        for call in calls.values():
            with pytest.raises(KernelPanic, match="would spin forever"):
                call()
        with running_as(other_cpu):
            lock.unlock()
    assert space.find_region_containing(region.vaddr()) is region
    check(space)
