import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.ak import MUST, KernelPanic
from refimpl.hw import I686_PAE, X86_64, Access, Machine, MiB, PageFault
from refimpl.kernel import (AllocationKind, MemoryManager, PageDirectory, PagePurpose,
                            PhysicalAddress, boot_aps)
from refimpl.kernel.invariants import (KernelSnapshot, page_table_refcount_violations,
                                       physical_page_violations)
from tests.kernel_helpers import map_user_page, sweep_allocation_failures, unmap_user_page

PAGE = 4096


def test_boot_layout(mm):
    layout = mm.layout
    kernel = mm.kernel_page_directory()
    assert kernel.is_kernel() and mm.machine.bsp.mmu.cr3 == kernel.cr3()
    assert layout.kernel_quickmap_pd == layout.kernel_mapping_base + 0x3FE07000
    assert layout.kernel_quickmap_per_cpu(1) == layout.kernel_mapping_base + 0x3FE09000
    assert not page_table_refcount_violations(mm)
    assert not physical_page_violations(mm)
    pml4 = mm.get_physical_page_entry(layout.kernel_load_paddr)
    assert pml4.purpose is PagePurpose.PAGE_DIRECTORY and pml4.ref_count() == 1
    assert pml4.paddr() == kernel.cr3()


def test_physical_page_entry_round_trip(mm):
    page = MUST(mm.allocate_physical_page())
    assert mm.get_physical_page_entry(page.paddr()) is page
    assert mm.get_physical_page_entry(page.paddr() + 123) is page
    assert mm.get_physical_address(page) == page.paddr()
    assert mm.physical_page_entries[page.paddr() // PAGE] is page
    page.unref()
    with pytest.raises(KernelPanic, match="no live PhysicalPage"):
        mm.get_physical_page_entry(page.paddr())
    with pytest.raises(KernelPanic, match="outside RAM"):
        mm.get_physical_page_entry(64 * MiB)


def test_refcounting_frees_on_last_unref_only(mm):
    free = mm.free_physical_pages()
    page = MUST(mm.allocate_physical_page())
    page.ref()
    page.unref()
    assert mm.free_physical_pages() == free - 1
    page.unref()
    assert mm.free_physical_pages() == free
    with pytest.raises(KernelPanic, match="unref\\(\\) of freed"):
        page.unref()


def test_boot_pages_never_return_to_the_free_list(mm):
    image = mm.get_physical_page_entry(mm.layout.kernel_load_paddr)
    free = mm.free_physical_pages()
    image.ref()
    image.unref()
    assert mm.free_physical_pages() == free


def test_allocated_pages_are_zero_filled(mm):
    page = MUST(mm.allocate_physical_page())
    mm.machine.memory.write(page.paddr(), b"dirty")
    page.unref()
    again = MUST(mm.allocate_physical_page())
    assert again.paddr() == page.paddr()
    assert mm.machine.memory.read(again.paddr(), 5) == bytes(5)


def test_ensure_pte_makes_no_kernel_heap_allocation(mm):
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    with mm.allocations.record() as log:
        MUST(mm.ensure_pte(directory, 0x400000))  # needs a new page table
        MUST(mm.ensure_pte(directory, 0x401000))  # table exists
    assert [record.kind for record in log] == [AllocationKind.PHYSICAL_PAGE]
    assert log[0].call_chain[-2:] == ("MemoryManager.ensure_pte",
                                      "MemoryManager.allocate_physical_page")


def test_ensure_pte_returns_the_entry_of_the_right_table(mm):
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    page = map_user_page(mm, directory, 0x7654000)
    cpu = mm.machine.bsp
    cpu.mmu.load_cr3(directory.cr3())
    assert cpu.mmu.translate(0x7654321, Access.USER | Access.WRITE) == page.paddr() + 0x321
    pte = mm.pte(directory, 0x7654000)
    assert pte.physical_page_base() == page.paddr() and pte.is_user_allowed()
    assert mm.pte(directory, 0x9000000) is None


def test_page_table_is_freed_with_its_last_pte(mm):
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    free = mm.free_physical_pages()
    first = map_user_page(mm, directory, 0x400000)
    second = map_user_page(mm, directory, 0x401000)
    assert mm.free_physical_pages() == free - 3
    table = mm.get_physical_page_entry(directory.page_table_addresses()[2])
    assert table.purpose is PagePurpose.PAGE_TABLE and table.ref_count() == 1
    unmap_user_page(mm, directory, 0x400000, first)
    assert directory.page_table_addresses()
    unmap_user_page(mm, directory, 0x401000, second)
    assert not directory.page_table_addresses()
    assert mm.free_physical_pages() == free


def test_kernel_pd_is_shared_so_kernel_page_tables_show_everywhere(mm):
    one = MUST(PageDirectory.try_create_for_userspace(mm))
    two = MUST(PageDirectory.try_create_for_userspace(mm))
    index = mm.layout.kernel_pdpt_index
    assert one.directory_page(index) is two.directory_page(index)
    assert one.directory_page(index).ref_count() == 3  # the kernel's and both users'
    heap = MUST(mm.kmalloc(64 * 1024))
    for directory in (one, two):
        mm.machine.bsp.mmu.load_cr3(directory.cr3())
        mm.machine.bsp.mmu.translate(heap, Access.WRITE)


def test_user_directory_layout_and_teardown(mm):
    free, heap = mm.free_physical_pages(), mm.kmalloc_heap.allocated_bytes()
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    assert len(directory.owned_pages()) == 2 + mm.layout.kernel_pdpt_index + 1
    assert mm.free_physical_pages() == free - (2 + mm.layout.kernel_pdpt_index)
    cr3 = directory.cr3()
    assert PageDirectory.find_by_cr3(mm, cr3) is directory
    directory.destroy()
    assert mm.free_physical_pages() == free
    assert mm.kmalloc_heap.allocated_bytes() == heap
    assert PageDirectory.find_by_cr3(mm, cr3) is None
    with pytest.raises(KernelPanic, match="destroyed twice"):
        directory.destroy()


def test_destroy_refuses_while_mapped_or_loaded(mm):
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    page = map_user_page(mm, directory, 0x400000)
    with pytest.raises(KernelPanic, match="page table"):
        directory.destroy()
    unmap_user_page(mm, directory, 0x400000, page)
    mm.machine.cpus[1].mmu.load_cr3(directory.cr3())
    with pytest.raises(KernelPanic, match="still loaded in CR3 of CPU \\[1\\]"):
        directory.destroy()
    mm.machine.cpus[1].mmu.load_cr3(mm.kernel_page_directory().cr3())
    directory.destroy()


def test_find_current(mm):
    assert PageDirectory.find_current(mm) is mm.kernel_page_directory()


@settings(max_examples=40)
@given(st.lists(st.tuples(st.sampled_from(["map", "unmap", "create", "destroy"]),
                          st.integers(0, 3), st.integers(0, 2047)), max_size=40))
def test_refcounts_match_pdes_and_everything_is_returned(operations):
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    # Grow the kernel heap up front: heap pages are never given back, and four directory
    # objects do not fit in the initial pool.
    for address in [MUST(mm.kmalloc(PageDirectory.OBJECT_SIZE)) for _ in range(4)]:
        mm.kfree(address)
    free = mm.free_physical_pages()
    directories: dict[int, PageDirectory] = {}
    mapped: dict[tuple[int, int], object] = {}
    for operation, slot, page_number in operations:
        vaddr = 0x400000 + page_number * 0x3000  # spreads over a dozen page tables
        directory = directories.get(slot)
        if operation == "create" and directory is None:
            directories[slot] = MUST(PageDirectory.try_create_for_userspace(mm))
        elif operation == "map" and directory and (slot, vaddr) not in mapped:
            mapped[slot, vaddr] = map_user_page(mm, directory, vaddr)
        elif operation == "unmap" and (slot, vaddr) in mapped:
            unmap_user_page(mm, directory, vaddr, mapped.pop((slot, vaddr)))
        elif operation == "destroy" and directory:
            for (owner, address) in [key for key in mapped if key[0] == slot]:
                unmap_user_page(mm, directory, address, mapped.pop((owner, address)))
            directories.pop(slot).destroy()
        assert page_table_refcount_violations(mm) == []
    for (slot, vaddr), page in list(mapped.items()):
        unmap_user_page(mm, directories[slot], vaddr, page)
    for directory in directories.values():
        directory.destroy()
    assert mm.free_physical_pages() == free
    assert physical_page_violations(mm) == []


def test_tlb_coherence_across_cpus_after_remap(mm):
    MUST(boot_aps(mm))  # flush_tlb sends IPIs only once SMP is enabled
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    old = map_user_page(mm, directory, 0x400000)
    new = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
    cpus = mm.machine.cpus
    for cpu in cpus:
        cpu.mmu.load_cr3(directory.cr3())
        assert cpu.mmu.translate(0x400000, Access.USER) == old.paddr()
    mm.pte(directory, 0x400000).set_physical_page_base(new.paddr())
    assert all(cpu.mmu.translate(0x400000, Access.USER) == old.paddr() for cpu in cpus)
    mm.flush_tlb_local(0x400000)
    assert cpus[0].mmu.translate(0x400000, Access.USER) == new.paddr()
    assert cpus[1].mmu.translate(0x400000, Access.USER) == old.paddr(), "CPU 1 is stale"
    mm.flush_tlb(directory, 0x400000)
    assert cpus[1].mmu.translate(0x400000, Access.USER) == new.paddr()


def test_unmapped_page_faults_after_flush_tlb(mm):
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    page = map_user_page(mm, directory, 0x400000)
    mmu = mm.machine.bsp.mmu
    mmu.load_cr3(directory.cr3())
    mmu.translate(0x400000, Access.USER)
    mm.release_pte(directory, 0x400000, is_last_pte=True)
    assert mmu.translate(0x400000, Access.USER) == page.paddr(), "stale until flushed"
    mm.flush_tlb(directory, 0x400000)
    with pytest.raises(PageFault):
        mmu.translate(0x400000, Access.USER)
    mmu.load_cr3(mm.kernel_page_directory().cr3())
    page.unref()


def test_quickmap_page_is_not_reentrant(mm):
    mm.quickmap_page(0x300000)
    with pytest.raises(KernelPanic, match="would deadlock"):
        mm.quickmap_page(0x301000)
    mm.unquickmap_page()
    with pytest.raises(KernelPanic, match="without quickmap_page"):
        mm.unquickmap_page()


def test_quickmap_pd_flushes_when_another_cpu_moved_the_window(mm):
    one = MUST(PageDirectory.try_create_for_userspace(mm))
    two = MUST(PageDirectory.try_create_for_userspace(mm))
    machine = mm.machine
    machine.cpus[1].enable_paging(mm.kernel_page_directory().cr3())  # as if AP boot had run
    window = mm.quickmap_pd(one, 0)[5]  # CPU 0 caches the window onto one's PD
    assert window.raw() == 0
    machine.current_cpu = machine.cpus[1]
    mm.quickmap_pd(two, 0)[5].set_raw(0x1234 << 12 | 1)  # CPU 1 retargets the window
    machine.current_cpu = machine.cpus[0]
    assert mm.quickmap_pd(two, 0)[5].raw() == 0x1234 << 12 | 1
    mm.quickmap_pd(two, 0)[5].clear()


def test_kmalloc_grows_the_heap_with_pages_only_its_page_tables_exist_already(mm):
    heap = mm.kmalloc_heap
    free = mm.free_physical_pages()
    with mm.allocations.record() as log:
        addresses = [MUST(mm.kmalloc(4000)) for _ in range(8)]
    assert heap.expansions >= 1
    chains = [record.call_chain for record in log if record.kind is AllocationKind.PHYSICAL_PAGE]
    assert chains and all(chain[-2:] == ("KmallocHeap.try_expand",
                                         "MemoryManager.allocate_physical_page")
                          for chain in chains)
    assert mm.free_physical_pages() < free
    cpu = mm.machine.bsp
    cpu.store(addresses[-1], b"heap!")
    assert cpu.load(addresses[-1], 5) == b"heap!"
    assert mm.pte(mm.kernel_page_directory(), addresses[-1]).is_global()
    for address in addresses:
        mm.kfree(address)
    assert heap.allocated_bytes() == 0
    assert mm.free_physical_pages() == free, "the empty expansions were given back"
    with pytest.raises(KernelPanic, match="freed twice"):
        mm.kfree(addresses[0])
    with pytest.raises(KernelPanic, match="not in the kernel heap"):
        mm.kfree(0x1234)


def test_kmalloc_bad_size(mm):
    assert MUST(mm.kmalloc(0))
    assert mm.kmalloc(-1).error().code() == 22


def test_fault_injection_counts_and_fails_once(mm):
    mm.allocations.fail_nth(AllocationKind.KMALLOC, 2)
    assert not mm.kmalloc(8).is_error()
    assert mm.kmalloc(8).error().code() == 12
    assert not mm.kmalloc(8).is_error()
    assert mm.allocations.calls[AllocationKind.KMALLOC] == 3
    with pytest.raises(ValueError):
        mm.allocations.fail_nth(AllocationKind.KMALLOC, 0)


def small_kernel() -> MemoryManager:
    return MemoryManager(Machine(X86_64, ram_size=16 * MiB))


def test_every_failure_of_ensure_pte_leaves_no_trace():
    def setup():
        mm = small_kernel()
        directory = MUST(PageDirectory.try_create_for_userspace(mm))
        return mm, lambda: mm.ensure_pte(directory, 0x800000)

    counts = sweep_allocation_failures(setup)
    assert counts == {AllocationKind.KMALLOC: 0, AllocationKind.PHYSICAL_PAGE: 1}


def test_every_failure_of_page_directory_creation_leaves_no_trace():
    def setup():
        mm = small_kernel()
        return mm, lambda: PageDirectory.try_create_for_userspace(mm)

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] == 1
    assert counts[AllocationKind.PHYSICAL_PAGE] == 2 + 128


def test_every_failure_of_heap_expansion_leaves_no_trace():
    def setup():
        mm = small_kernel()
        MUST(mm.kmalloc(4 * PAGE - 64))  # fill the initial pool
        return mm, lambda: mm.kmalloc(3 * PAGE)

    counts = sweep_allocation_failures(setup)
    assert counts[AllocationKind.KMALLOC] == 1
    assert counts[AllocationKind.PHYSICAL_PAGE] == 4  # four heap pages; the page table exists


def test_out_of_memory_is_reported_not_fatal():
    mm = MemoryManager(Machine(X86_64, ram_size=4 * MiB))
    directories = []
    while True:
        result = PageDirectory.try_create_for_userspace(mm)
        if result.is_error():
            break
        directories.append(result.value())
    assert result.error().code() == 12 and directories
    assert mm.free_physical_pages() < 2 + mm.layout.kernel_pdpt_index + 1
    for directory in directories:
        directory.destroy()
    assert not physical_page_violations(mm)


def test_bad_addresses_get_clear_errors(mm):
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    before = KernelSnapshot.take(mm)
    with pytest.raises(KernelPanic, match="not canonical"):
        mm.ensure_pte(directory, 0x0000_8000_0000_0000)
    with pytest.raises(KernelPanic, match="outside every page directory"):
        mm.ensure_pte(directory, 0xFFFF_8000_0000_0000)
    with pytest.raises(KernelPanic, match="outside every page directory"):
        mm.pte(directory, mm.layout.kernel_mapping_base + (1 << 30))
    assert KernelSnapshot.take(mm) == before


def test_the_kernel_refuses_formats_it_cannot_run_on():
    from refimpl.hw import TINY
    with pytest.raises(ValueError, match="runs on x86_64"):
        MemoryManager(Machine(TINY, ram_size=512))
    with pytest.raises(ValueError, match="needs at least"):
        MemoryManager(Machine(X86_64, ram_size=2 * MiB))


def test_i686_pae_kernel_boots_and_maps():
    mm = MemoryManager(Machine(I686_PAE, ram_size=16 * MiB))
    assert mm.layout.kernel_pdpt_index == 3
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    page = map_user_page(mm, directory, 0x400000)
    mm.machine.bsp.mmu.load_cr3(directory.cr3())
    assert mm.machine.bsp.mmu.translate(0x400010, Access.USER | Access.WRITE) == page.paddr() + 16
    assert directory.cr3() == directory.directory_table.paddr()
    assert not page_table_refcount_violations(mm)


def test_public_names():
    from refimpl.hw import MMU, Machine, PageFault, PagingFormat, PhysicalMemory  # noqa: F401
    from refimpl.kernel import MemoryManager, PageDirectory, PhysicalPage  # noqa: F401
    assert PhysicalAddress(0x1000).page_base() == 0x1000
