"""The *before* designs behave as the lessons say they did."""

import inspect

import pytest

import refimpl.history.kresult as before_syscalls
import refimpl.kernel.syscalls as after_syscalls
from refimpl.ak import MUST, Errno, KernelPanic
from refimpl.history.identity_mapping import (MemoryManagerWithIdentityRegions,
                                              page_directory_heap_cost)
from refimpl.history.identity_mapping import boot_aps as boot_aps_before
from refimpl.history.identity_mapping import (MemoryManagerWithKernelRangeAllocator,
                                              boot_aps_at_cdab5b20916)
from refimpl.history.kresult import KResult, KResultOr, KSuccess
from refimpl.history.page_table_map import (REENTRANCY_TARGET, HashMap,
                                            MemoryManagerWithPageTableMap, prepare_reentrancy)
from refimpl.history.range_allocator import (KERNEL_IDENTIFIERS_WITH_RANGE, OLD_NAMES, RENAMES,
                                             Range, RangeAllocator, rename_whole_identifiers,
                                             same_allocations, search_and_replace)
from refimpl.hw import X86_64, Access, Machine, MiB, PageFault, trace_walk
from refimpl.kernel import (AddressSpace, AllocationKind, MemoryManager,
                            VirtualRange, VirtualRangeAllocator, boot_aps,
                            create_identity_mapped_region)
from refimpl.kernel.invariants import page_table_refcount_violations
from refimpl.viz.call_chain import record_call_chain

PAGE = 4096
PRIVATE_ANONYMOUS = after_syscalls.MAP_PRIVATE | after_syscalls.MAP_ANONYMOUS


# Lesson 01 -------------------------------------------------------------------------------------

def test_the_rename_changed_no_behaviour():
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    before = same_allocations(RangeAllocator, Range, mm)
    assert before == same_allocations(VirtualRangeAllocator, VirtualRange, mm)
    assert before[0][0] == "[0x101000, 0x103000)"  # a guard page in


def test_search_and_replace_over_matches_where_whole_identifiers_do_not():
    naive = [search_and_replace(name, "Range", "VirtualRange")
             for name in KERNEL_IDENTIFIERS_WITH_RANGE]
    exact = [rename_whole_identifiers(name, RENAMES) for name in KERNEL_IDENTIFIERS_WITH_RANGE]
    assert "UsedMemoryVirtualRange" in naive and "ShouldDeallocateVirtualMemoryVirtualRange" in naive
    assert exact[:2] == ["VirtualRange", "VirtualRangeAllocator"]
    assert exact[2:] == list(KERNEL_IDENTIFIERS_WITH_RANGE[2:])


def test_before_source_is_the_modern_source_with_old_names():
    import refimpl.kernel.virtual_range_allocator as module
    after = inspect.getsource(module)
    before = rename_whole_identifiers(after, OLD_NAMES)
    assert "class RangeAllocator:" in before and "VirtualRange" not in before
    assert rename_whole_identifiers(before, {v: k for k, v in OLD_NAMES.items()}) == after


# Lesson 02 -------------------------------------------------------------------------------------

def test_kresult_stores_the_errno_negated():
    assert KResult(Errno.ENOMEM).error() == -12
    assert KResult(Errno.ENOMEM).error() != Errno.ENOMEM
    assert KSuccess.is_success() and repr(KResult(12)) == "KResult(-12: ENOMEM)"
    assert KResultOr.from_error(KResult(22)).error() == KResult(22)


@pytest.mark.parametrize("module", [before_syscalls, after_syscalls])
def test_both_syscall_layers_return_minus_errno_to_user_space(module):
    space = MUST(AddressSpace.try_create(MemoryManager(Machine(X86_64, ram_size=16 * MiB))))
    ok = module.sys_mmap(space, 0, 2 * PAGE, 3, PRIVATE_ANONYMOUS)
    assert module.syscall_return_value(ok) == space.region_tree.total_range.base
    outside = module.sys_mmap(space, PAGE, PAGE, 3, PRIVATE_ANONYMOUS | after_syscalls.MAP_FIXED)
    assert module.syscall_return_value(outside) == -12
    assert module.syscall_return_value(module.sys_mmap(space, 0, 0, 3, PRIVATE_ANONYMOUS)) == -22
    assert module.syscall_return_value(module.sys_munmap(space, ok.value(), PAGE)) == 0


def test_negating_a_kresult_at_the_boundary_reports_success():
    space = MUST(AddressSpace.try_create(MemoryManager(Machine(X86_64, ram_size=16 * MiB))))
    failed = before_syscalls.sys_mmap(space, 0, 0, 3, PRIVATE_ANONYMOUS)
    assert -failed.error().error() == 22  # the habit from positive errnos: a "valid" result


# Lesson 03 -------------------------------------------------------------------------------------

def test_the_hash_map_makes_ensure_pte_write_a_user_mapping_into_a_kernel_page_table():
    mm, space, region = prepare_reentrancy(MemoryManagerWithPageTableMap)
    heap_pages_before = mm.kmalloc_heap.expansions
    MUST(region.map(space.page_directory))
    assert mm.kmalloc_heap.expansions == heap_pages_before + 1
    memory, cr3 = mm.machine.memory, space.page_directory.cr3()
    assert trace_walk(memory, cr3, REENTRANCY_TARGET).faulted, "the user PTE stayed empty"
    heap_page = mm.layout.kmalloc_range_base + 2 * PAGE
    walk = trace_walk(memory, cr3, heap_page)
    assert walk.physical_address == region.physical_page(0).paddr(), \
        "a kernel heap page now maps the user's page"
    assert walk.physical_address not in [p.paddr() for p in mm.kmalloc_heap.subheaps[-1].pages]


def test_the_nested_call_is_pte_on_the_kernel_directory_as_at_24ecf1d0218_parent():
    mm, space, region = prepare_reentrancy(MemoryManagerWithPageTableMap)
    _, events = record_call_chain(lambda: region.map(space.page_directory),
                                  ["MemoryManagerWithPageTableMap.ensure_pte", "MemoryManager.pte",
                                   "HashMap.try_rehash", "KmallocHeap.try_expand"])
    calls = [e.function for e in events if e.kind == "call"]
    assert calls[:3] == ["MemoryManagerWithPageTableMap.ensure_pte", "HashMap.try_rehash",
                         "KmallocHeap.try_expand"]
    assert set(calls[3:]) == {"MemoryManager.pte"}  # never ensure_pte: the tables exist


def test_the_hash_map_grows_at_60_percent_like_ak_hash_table():
    mm = MemoryManagerWithPageTableMap(Machine(X86_64, ram_size=16 * MiB))
    table = HashMap(mm)
    grew_at, sizes = [], []
    for n in range(1, 41):
        with mm.allocations.record() as log:
            table.set(n, None)
        if log:
            grew_at.append(n)
            sizes += [record.size for record in log]
    assert grew_at == [1, 3, 5, 10, 20, 39]
    assert sizes[:3] == [5 * 24, 9 * 24, 17 * 24]  # capacity + 1 buckets of 24 bytes


def test_boot_page_tables_are_not_in_the_kernels_map():
    mm = MemoryManagerWithPageTableMap(Machine(X86_64, ram_size=16 * MiB))
    kernel = mm.kernel_page_directory()
    assert mm.layout.kernel_load_base & ~(2 * MiB - 1) not in kernel.m_page_tables
    assert mm.layout.kmalloc_range_base in kernel.m_page_tables


def test_at_a_pd_index_with_an_empty_kernel_pde_the_stray_pte_lands_in_frame_0():
    target = 48 * 2 * MiB + 2 * PAGE  # PD index 48: just past the kmalloc range
    mm, space, region = prepare_reentrancy(MemoryManagerWithPageTableMap, target)
    frame_0 = bytes(mm.machine.memory.read(0, PAGE))
    MUST(region.map(space.page_directory))
    entry = int.from_bytes(mm.machine.memory.read(2 * 8, 8), "little")
    assert bytes(mm.machine.memory.read(0, PAGE)) != frame_0
    assert entry & ~0xFFF & ((1 << 52) - 1) == region.physical_page(0).paddr()
    assert trace_walk(mm.machine.memory, space.page_directory.cr3(), target).faulted


def test_the_stray_pte_is_user_readable():
    mm, space, region = prepare_reentrancy(MemoryManagerWithPageTableMap)
    MUST(region.map(space.page_directory))
    mmu = mm.machine.bsp.mmu
    mmu.load_cr3(space.page_directory.cr3())
    heap = mm.layout.kmalloc_range_base
    assert mmu.translate(heap + 2 * PAGE, Access.USER) == region.physical_page(0).paddr()
    with pytest.raises(PageFault) as fault:
        mmu.translate(heap + 3 * PAGE, Access.USER)  # its neighbour: supervisor-only
    assert fault.value.error_code == 0x5
    mmu.load_cr3(mm.kernel_page_directory().cr3())


def test_without_the_hash_map_the_same_mapping_is_clean_and_allocates_nothing():
    mm, space, region = prepare_reentrancy(MemoryManager)
    with mm.allocations.record() as log:
        MUST(region.map(space.page_directory))
    assert [record.kind for record in log] == [AllocationKind.PHYSICAL_PAGE]  # the page table
    assert mm.kmalloc_heap.expansions == 0
    walk = trace_walk(mm.machine.memory, space.page_directory.cr3(), REENTRANCY_TARGET)
    assert walk.physical_address == region.physical_page(0).paddr()
    assert page_table_refcount_violations(mm) == []


def test_the_hash_map_owns_page_tables_and_release_pte_frees_them():
    mm = MemoryManagerWithPageTableMap(Machine(X86_64, ram_size=16 * MiB))
    directory = MUST(MemoryManagerWithPageTableMap.page_directory_class
                     .try_create_for_userspace(mm))
    free = mm.free_physical_pages()
    pte = MUST(mm.ensure_pte(directory, 0x40_0000))
    assert 0x40_0000 in directory.m_page_tables and pte.raw() == 0
    mm.release_pte(directory, 0x40_0000, is_last_pte=True)
    assert 0x40_0000 not in directory.m_page_tables and mm.free_physical_pages() == free


# Lesson 04 -------------------------------------------------------------------------------------

def test_all_three_designs_boot_the_aps_and_leave_no_identity_mapping():
    for kernel, boot in ((MemoryManagerWithIdentityRegions, boot_aps_before),
                         (MemoryManagerWithKernelRangeAllocator, boot_aps_at_cdab5b20916),
                         (MemoryManager, boot_aps)):
        mm = kernel(Machine(X86_64, ram_size=16 * MiB, cpu_count=3))
        free = mm.free_physical_pages()
        MUST(boot(mm))
        assert all(cpu.online for cpu in mm.machine.cpus) and mm.smp_enabled
        for cpu in mm.machine.cpus:
            with pytest.raises(PageFault):
                cpu.mmu.translate(0x8000, Access.EXECUTE)
        assert mm.free_physical_pages() == free


def test_the_identity_range_goes_back_to_the_identity_allocator():
    mm = MemoryManagerWithIdentityRegions(Machine(X86_64, ram_size=16 * MiB, cpu_count=2))
    kernel = mm.kernel_page_directory()
    general, identity = (kernel.range_allocator.available_ranges(),
                         kernel.identity_range_allocator.available_ranges())
    MUST(boot_aps_before(mm))
    assert kernel.range_allocator.available_ranges() == general
    assert kernel.identity_range_allocator.available_ranges() == identity


def test_after_the_commit_the_kernel_allocator_never_sees_the_identity_range():
    mm = MemoryManagerWithKernelRangeAllocator(Machine(X86_64, ram_size=16 * MiB, cpu_count=2))
    allocator = mm.kernel_page_directory().range_allocator
    free = allocator.available_ranges()
    MUST(boot_aps_at_cdab5b20916(mm))
    assert allocator.available_ranges() == free
    assert not hasattr(mm.kernel_page_directory(), "identity_range_allocator")


def test_giving_the_identity_range_to_the_kernel_allocator_panics():
    mm = MemoryManagerWithKernelRangeAllocator(Machine(X86_64, ram_size=16 * MiB, cpu_count=2))
    region = MUST(create_identity_mapped_region(mm, 0x8000, 4096))
    with pytest.raises(KernelPanic, match="outside"):
        mm.unmap_kernel_region(region)  # ShouldDeallocateVirtualMemoryVirtualRange::Yes


def test_the_commit_removed_one_allocator_member_from_every_page_directory():
    before = page_directory_heap_cost(MemoryManagerWithIdentityRegions)
    at_commit = page_directory_heap_cost(MemoryManagerWithKernelRangeAllocator)
    assert before - at_commit == 64  # one 48-byte member, in 64-byte kmalloc chunks
    assert at_commit - page_directory_heap_cost(MemoryManager) == 64  # the other, in 2022
