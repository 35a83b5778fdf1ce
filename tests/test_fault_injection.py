"""Fault injection over operations that expand the kernel heap half-way (finding K7).

Each scenario starts with a kernel heap that is exactly full, so the operation's first kmalloc
expands it. Every allocation the operation makes is failed in turn (`sweep_allocation_failures`),
and the kernel snapshot after the failure, heap size included, must equal the one before.
"""

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import (PROT_READ, PROT_WRITE, AddressSpace, AllocationKind, MemoryManager,
                            PageDirectory, write_user_memory)
from refimpl.kernel.kmalloc import CHUNK_SIZE
from refimpl.kernel.syscalls import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, sys_mmap
from tests.kernel_helpers import sweep_allocation_failures

PAGE = 4096
RW = PROT_READ | PROT_WRITE


def fill_kernel_heap(mm):
    for _ in range(mm.kmalloc_heap.free_bytes() // CHUNK_SIZE):
        MUST(mm.kmalloc(CHUNK_SIZE))
    assert mm.kmalloc_heap.free_bytes() == 0


def space_with_data(pages=4):
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    space = MUST(AddressSpace.try_create(mm))
    region = MUST(space.allocate_region(pages * PAGE, mmap=True))
    MUST(write_user_memory(space, region.vaddr(), b"d" * pages * PAGE))
    return mm, space, region


def test_a_failed_operation_gives_back_the_heap_it_grew():
    mm, space, _ = space_with_data()
    fill_kernel_heap(mm)
    size, free = mm.kmalloc_heap.size(), mm.free_physical_pages()
    mm.allocations.fail_nth(AllocationKind.PHYSICAL_PAGE, 6)  # after the expansion's 4 pages
    assert PageDirectory.try_create_for_userspace(mm).error().code() == 12
    assert mm.kmalloc_heap.size() == size and mm.free_physical_pages() == free


def test_page_directory_creation_that_expands_the_heap():
    def setup():
        mm, space, _ = space_with_data()
        fill_kernel_heap(mm)
        return mm, lambda: PageDirectory.try_create_for_userspace(mm), [space]

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.PHYSICAL_PAGE] > 4  # the heap's pages, then the directory's


def test_fork_of_a_fork_that_expands_the_heap():
    def setup():
        mm, space, _ = space_with_data()
        child = MUST(space.try_clone(seed=1))
        fill_kernel_heap(mm)
        return mm, lambda: child.try_clone(seed=2), [space, child]

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] > 3 and counts[AllocationKind.PHYSICAL_PAGE] > 4


def test_allocate_region_that_expands_the_heap():
    def setup():
        mm, space, _ = space_with_data()
        fill_kernel_heap(mm)
        return mm, lambda: space.allocate_region(3 * PAGE, mmap=True), [space]

    assert sweep_allocation_failures(setup)[AllocationKind.PHYSICAL_PAGE] >= 4


def test_munmap_split_that_expands_the_heap():
    def setup():
        mm, space, region = space_with_data(pages=6)
        fill_kernel_heap(mm)
        return mm, lambda: space.unmap_mmap_range(region.vaddr() + 2 * PAGE, PAGE), [space]

    assert sweep_allocation_failures(setup)[AllocationKind.KMALLOC] == 2


def test_map_fixed_that_expands_the_heap():
    def setup():
        mm, space, region = space_with_data(pages=6)
        fill_kernel_heap(mm)
        return mm, lambda: sys_mmap(space, region.vaddr() + PAGE, 2 * PAGE, RW,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), [space]

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] >= 3 and counts[AllocationKind.PHYSICAL_PAGE] >= 4


def test_cow_fault_with_a_full_heap_fails_cleanly():
    def setup():
        mm, space, region = space_with_data()
        child = MUST(space.try_clone())
        fill_kernel_heap(mm)
        return mm, lambda: write_user_memory(child, region.vaddr() + PAGE, b"x"), [space, child]

    assert sweep_allocation_failures(setup)[AllocationKind.PHYSICAL_PAGE] == 1
