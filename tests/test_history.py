"""The *before* designs behave as the lessons say they did."""

import inspect

import pytest

import refimpl.history.kresult as before_syscalls
import refimpl.kernel.syscalls as after_syscalls
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.ak import MUST, Errno, KernelPanic
from refimpl.history.identity_mapping import (MemoryManagerWithIdentityRegions,
                                              page_directory_heap_cost)
from refimpl.history.identity_mapping import boot_aps as boot_aps_before
from refimpl.history.identity_mapping import (MemoryManagerWithKernelRangeAllocator,
                                              boot_aps_at_cdab5b20916)
from refimpl.history.kresult import KResult, KResultOr, KSuccess
from refimpl.history.page_table_map import (REENTRANCY_TARGET, HashMap,
                                            MemoryManagerWithPageTableMap, prepare_reentrancy)
from refimpl.history.range_allocator import (KERNEL_IDENTIFIERS_WITH_RANGE, RENAMES, Range,
                                             RangeAllocator, compare_with_modern,
                                             rename_whole_identifiers, search_and_replace)
from refimpl.hw import X86_64, Access, Machine, MiB, PageFault, trace_walk
from refimpl.kernel import (AddressSpace, AllocationKind, MemoryManager, boot_aps,
                            create_identity_mapped_region)
from refimpl.kernel.invariants import page_table_refcount_violations
from refimpl.viz.call_chain import record_call_chain

PAGE = 4096
PRIVATE_ANONYMOUS = after_syscalls.MAP_PRIVATE | after_syscalls.MAP_ANONYMOUS


# Lesson 01 -------------------------------------------------------------------------------------

def test_the_before_allocator_has_the_2021_api():
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    heap_in_use = mm.kmalloc_heap.allocated_bytes()
    allocator = RangeAllocator(mm)
    allocator.initialize_with_range(0x10_0000, 64 * PAGE)
    assert allocator.allocate_anywhere(2 * PAGE) == Range(0x10_1000, 2 * PAGE)  # a guard page in
    assert allocator.allocate_specific(0x10_2000, PAGE) is None  # Optional: nothing, no errno
    assert allocator.allocate_anywhere(0) is None and allocator.allocate_anywhere(PAGE * 64) is None
    assert allocator.deallocate(Range(0x10_1000, 2 * PAGE)) is None
    assert allocator.available_ranges() == [Range(0x10_0000, 64 * PAGE)]
    with pytest.raises(KernelPanic, match="outside"):
        allocator.deallocate(Range(0x20_0000, PAGE))  # VERIFY, not an error code
    assert mm.kmalloc_heap.allocated_bytes() > heap_in_use  # one kmalloc'd node per free range
    allocator.destroy()
    assert mm.kmalloc_heap.allocated_bytes() == heap_in_use


def test_the_before_allocator_walks_every_free_range_for_a_specific_request():
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    allocator = RangeAllocator(mm)
    allocator.initialize_with_range(0, 64 * PAGE)
    for base in range(0, 64 * PAGE, 2 * PAGE):  # 32 one-page holes
        allocator.allocate_specific(base, PAGE)
    holes = allocator.available_ranges()
    assert len(holes) == 32
    visited = []
    original = Range.contains
    try:
        Range.contains = lambda self, other: visited.append(self) or original(self, other)
        assert allocator.allocate_specific(63 * PAGE, PAGE) == Range(63 * PAGE, PAGE)
    finally:
        Range.contains = original
    assert [free for free in visited if free in holes][:32] == holes  # all of them, in order


requests = st.lists(st.one_of(
    st.tuples(st.just("anywhere"), st.integers(0, 8).map(lambda n: n * PAGE)),
    st.tuples(st.just("specific"), st.integers(0, 40).map(lambda n: 0x10_0000 + n * PAGE),
              st.integers(1, 6).map(lambda n: n * PAGE))), max_size=12)


@settings(max_examples=40, deadline=None)
@given(requests)
def test_the_before_and_modern_allocators_make_the_same_choices(steps):
    """Two separate implementations (a linear walk and a bisect), one behaviour: the later
    API changes (Optional -> ErrorOr, O(n) -> O(log n)) kept every choice."""
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    *results, (_, old_free, new_free) = compare_with_modern(mm, 0x10_0000, 40 * PAGE, steps)
    for request, old, new in results:
        assert old == new or (old == "None" and new.startswith("Error(")), request
    assert old_free == new_free


def test_compare_with_modern_frees_through_both():
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    rows = compare_with_modern(mm, 0x10_0000, 16 * PAGE, [
        ("anywhere", 2 * PAGE), ("specific", 0x10_8000, PAGE), ("specific", 0x10_8000, PAGE),
        ("free", 0x10_1000, 2 * PAGE)])
    assert rows == [
        ("anywhere(0x2000)", "[0x101000, 0x103000)", "[0x101000, 0x103000)"),
        ("specific(0x108000, 0x1000)", "[0x108000, 0x109000)", "[0x108000, 0x109000)"),
        ("specific(0x108000, 0x1000)", "None",
         "Error(EEXIST: File exists ([0x108000, 0x109000) is not entirely free))"),
        ("free(0x101000, 0x2000)", "None", "None"),
        ("free ranges after", "[0x100000, 0x108000), [0x109000, 0x110000)",
         "[0x100000, 0x108000), [0x109000, 0x110000)")]


def test_search_and_replace_over_matches_where_whole_identifiers_do_not():
    naive = [search_and_replace(name, "Range", "VirtualRange")
             for name in KERNEL_IDENTIFIERS_WITH_RANGE]
    exact = [rename_whole_identifiers(name, RENAMES) for name in KERNEL_IDENTIFIERS_WITH_RANGE]
    assert "UsedMemoryVirtualRange" in naive and "ShouldDeallocateVirtualMemoryVirtualRange" in naive
    assert exact[:2] == ["VirtualRange", "VirtualRangeAllocator"]
    assert exact[2:] == list(KERNEL_IDENTIFIERS_WITH_RANGE[2:])


def test_the_commit_is_the_before_class_with_its_names_changed():
    before = inspect.getsource(RangeAllocator)
    after = rename_whole_identifiers(before, RENAMES)
    assert after.startswith("class VirtualRangeAllocator:") and "VirtualRange | None" in after
    assert rename_whole_identifiers(after, {v: k for k, v in RENAMES.items()}) == before


# Lesson 02 -------------------------------------------------------------------------------------

def test_kresult_stores_the_errno_negated():
    assert KResult(Errno.ENOMEM).error() == -12
    assert KResult(Errno.ENOMEM).error() != Errno.ENOMEM  # the raw integer is negative
    assert KSuccess.is_success() and repr(KResult(12)) == "KResult(-12: ENOMEM)"
    assert KResultOr.from_error(KResult(22)).error() == KResult(22)


def test_kresult_compares_equal_to_the_positive_errno_it_holds():
    # 79fa9765ca8^:Kernel/API/KResult.h: operator==(ErrnoCode) is is_error() && m_error == -error
    assert KResult(Errno.ENOMEM) == Errno.ENOMEM and not KResult(Errno.ENOMEM) != Errno.ENOMEM
    assert KResult(Errno.ENOMEM) != Errno.EINVAL and KResult(Errno.ENOMEM) != -Errno.ENOMEM
    assert KSuccess != 0 and not KSuccess == 0  # success equals no errno, not even 0
    failed = before_syscalls.sys_mmap(None, 0, 0, 3, PRIVATE_ANONYMOUS)
    assert failed.error() == Errno.EINVAL  # as LocalSocket::bind tested `result.error() == EEXIST`


def test_both_kresult_types_work_with_try():
    assert KResult(Errno.EPERM).release_error() == Errno.EPERM  # e1af24eac86
    assert KResult(Errno.EPERM).release_value() is None
    assert KResultOr.from_error(KResult(Errno.EPERM)).release_error() == Errno.EPERM  # fd44336ef8d


@pytest.mark.parametrize("module", [before_syscalls, after_syscalls])
def test_both_syscall_layers_return_minus_errno_to_user_space(module):
    space = MUST(AddressSpace.try_create(MemoryManager(Machine(X86_64, ram_size=16 * MiB))))
    ok = module.sys_mmap(space, 0, 2 * PAGE, 3, PRIVATE_ANONYMOUS)
    assert module.syscall_return_value(ok) == space.region_tree.total_range.base
    outside = module.sys_mmap(space, PAGE, PAGE, 3, PRIVATE_ANONYMOUS | after_syscalls.MAP_FIXED)
    assert module.syscall_return_value(outside) == -12
    assert module.syscall_return_value(module.sys_mmap(space, 0, 0, 3, PRIVATE_ANONYMOUS)) == -22
    assert module.syscall_return_value(module.sys_munmap(space, ok.value(), PAGE)) == 0


def test_negating_a_kresults_raw_integer_is_the_hazard_the_lesson_shows():
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
