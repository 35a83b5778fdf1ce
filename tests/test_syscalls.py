"""sys_mmap and sys_mprotect against SerenityOS's sys$mmap/sys$mprotect at f0f97e1db02
(findings A4 and K4 of issue 13)."""

import pytest

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import (PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, AddressSpace,
                            AllocationKind, MemoryManager, read_user_memory, write_user_memory)
from refimpl.kernel.invariants import (KernelSnapshot, address_space_violations,
                                       page_table_refcount_violations,
                                       physical_page_violations)
from refimpl.kernel.syscalls import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE,
                                     MAP_PRIVATE, MAP_RANDOMIZED, MAP_SHARED, MAP_STACK,
                                     sys_mmap, sys_mprotect, sys_munmap)
from tests.kernel_helpers import sweep_allocation_failures

PAGE = 4096
RW = PROT_READ | PROT_WRITE
PRIVATE = MAP_PRIVATE | MAP_ANONYMOUS
EPERM, ENOMEM, EFAULT, EEXIST, EINVAL = 1, 12, 14, 17, 22


def new_space():
    return MUST(AddressSpace.try_create(MemoryManager(Machine(X86_64, ram_size=16 * MiB))))


def check(space):
    assert address_space_violations(space) == []
    assert page_table_refcount_violations(space.mm) == []
    assert physical_page_violations(space.mm) == []


def test_map_fixed_replaces_what_was_mapped():
    space = new_space()
    base = MUST(sys_mmap(space, 0, 8 * PAGE, RW, PRIVATE))
    MUST(write_user_memory(space, base, (b"old" * 8 * PAGE)[:8 * PAGE]))
    address = MUST(sys_mmap(space, base + 2 * PAGE, 3 * PAGE, PROT_READ, PRIVATE | MAP_FIXED))
    assert address == base + 2 * PAGE
    assert MUST(read_user_memory(space, base + 2 * PAGE, 3)) == bytes(3)  # fresh zero pages
    assert MUST(read_user_memory(space, base, 3)) == b"old"
    assert [region.range.size for region in space.region_tree.regions()] == \
        [2 * PAGE, 3 * PAGE, 3 * PAGE]
    assert write_user_memory(space, address, b"x").error().code() == EFAULT  # PROT_READ now
    check(space)


def test_map_fixed_over_several_regions_and_a_gap():
    space = new_space()
    first = MUST(sys_mmap(space, 0, 2 * PAGE, RW, PRIVATE))
    MUST(sys_mmap(space, first + 4 * PAGE, 2 * PAGE, RW, PRIVATE | MAP_FIXED))
    MUST(sys_mmap(space, first + PAGE, 4 * PAGE, RW, PRIVATE | MAP_FIXED))
    assert [(r.vaddr() - first, r.size()) for r in space.region_tree.regions()] == \
        [(0, PAGE), (PAGE, 4 * PAGE), (5 * PAGE, PAGE)]
    check(space)


def test_map_fixed_noreplace_is_eexist_over_a_mapping():
    space = new_space()
    base = MUST(sys_mmap(space, 0, 2 * PAGE, RW, PRIVATE))
    before = KernelSnapshot.take(space.mm, (space,))
    result = sys_mmap(space, base + PAGE, PAGE, RW, PRIVATE | MAP_FIXED_NOREPLACE)
    assert result.error().code() == ENOMEM  # RegionTree.cpp#L99-L101 at f0f97e1db02
    assert before.differences(KernelSnapshot.take(space.mm, (space,))) == []
    free = base + 4 * PAGE
    assert MUST(sys_mmap(space, free, PAGE, RW, PRIVATE | MAP_FIXED_NOREPLACE)) == free


def test_map_fixed_never_replaces_a_region_mmap_did_not_make():
    space = new_space()
    kernel_made = MUST(space.allocate_region(PAGE))
    result = sys_mmap(space, kernel_made.vaddr(), PAGE, RW, PRIVATE | MAP_FIXED)
    assert result.error().code() == EPERM


def test_every_failure_of_map_fixed_leaves_the_old_mapping_in_place():
    def setup():
        space = new_space()
        base = MUST(sys_mmap(space, 0, 6 * PAGE, RW, PRIVATE))
        MUST(write_user_memory(space, base, b"k" * 6 * PAGE))
        # over the middle of the region and into the next 2 MiB (a new page table)
        target = (base // (512 * PAGE) + 1) * 512 * PAGE - 2 * PAGE
        MUST(sys_munmap(space, base, 6 * PAGE))
        MUST(sys_mmap(space, target - 2 * PAGE, 4 * PAGE, RW, PRIVATE | MAP_FIXED))
        return space.mm, lambda: sys_mmap(space, target, 4 * PAGE, PROT_READ,
                                          PRIVATE | MAP_FIXED), [space]

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] >= 3 and counts[AllocationKind.PHYSICAL_PAGE] == 1


@pytest.mark.parametrize("prot, flags", [
    (PROT_READ | PROT_EXEC, PRIVATE), (RW | PROT_EXEC, PRIVATE), (PROT_EXEC, PRIVATE),
    (PROT_READ | PROT_EXEC, PRIVATE | MAP_STACK), (RW, MAP_SHARED | MAP_ANONYMOUS | MAP_STACK),
    (0x8, PRIVATE), (1 << 40, PRIVATE), (-1, PRIVATE), (RW, PRIVATE | 0x4000),
    (RW, PRIVATE | MAP_FIXED | MAP_RANDOMIZED), (RW, MAP_PRIVATE), (RW, MAP_ANONYMOUS),
    (RW, MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS),
])
def test_mmap_refuses_what_sys_mmap_refuses(prot, flags):
    space = new_space()
    before = KernelSnapshot.take(space.mm, (space,))
    assert sys_mmap(space, 0, PAGE, prot, flags).error().code() == EINVAL
    assert before.differences(KernelSnapshot.take(space.mm, (space,))) == []


def test_mmap_of_kernel_memory_is_efault():
    space = new_space()
    ceiling = space.mm.layout.user_range_ceiling
    assert sys_mmap(space, ceiling - PAGE, 2 * PAGE, RW, PRIVATE | MAP_FIXED).error().code() \
        == EFAULT


@pytest.mark.parametrize("prot", [PROT_EXEC, PROT_READ | PROT_EXEC, RW | PROT_EXEC, 0x8,
                                  1 << 40])
def test_mprotect_applies_the_same_rules(prot):
    space = new_space()
    base = MUST(sys_mmap(space, 0, 2 * PAGE, RW, PRIVATE))
    before = KernelSnapshot.take(space.mm, (space,))
    assert sys_mprotect(space, base, PAGE, prot).error().code() == EINVAL
    assert before.differences(KernelSnapshot.take(space.mm, (space,))) == []
    MUST(sys_mprotect(space, base, PAGE, PROT_NONE))


def test_mprotect_checks_eperm_before_coverage_as_sys_mprotect_does():
    space = new_space()
    kernel_made = MUST(space.allocate_region(PAGE))
    # the range also covers an unmapped page: SerenityOS says EPERM, not ENOMEM
    assert sys_mprotect(space, kernel_made.vaddr(), 2 * PAGE, PROT_READ).error().code() == EPERM


def test_map_shared_is_shared_across_fork():
    space = new_space()
    base = MUST(sys_mmap(space, 0, PAGE, RW, MAP_SHARED | MAP_ANONYMOUS))
    MUST(write_user_memory(space, base, b"parent"))
    child = MUST(space.try_clone())
    MUST(write_user_memory(child, base, b"CHILD!"))
    assert MUST(read_user_memory(space, base, 6)) == b"CHILD!"
    assert space.find_region_containing(base).shared
    check(space), check(child)
