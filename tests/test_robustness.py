"""Reproducers for the robustness findings K1-K14: each test failed before its fix.

The findings came from an adversarial pass over refimpl's public API; the ids are those of
`kernel_robustness_findings.md` (issue 13).
"""

import pytest

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import (PROT_READ, PROT_WRITE, AddressSpace, MemoryManager,
                            read_user_memory, write_user_memory)
from refimpl.kernel.invariants import (KernelSnapshot, address_space_violations,
                                       page_table_refcount_violations,
                                       physical_page_violations)

PAGE = 4096
RW = PROT_READ | PROT_WRITE
EINVAL, EFAULT, ENOMEM = 22, 14, 12


def new_space(cpus=1):
    return MUST(AddressSpace.try_create(MemoryManager(Machine(X86_64, ram_size=16 * MiB,
                                                              cpu_count=cpus))))


def check(space):
    assert address_space_violations(space) == []
    assert page_table_refcount_violations(space.mm) == []
    assert physical_page_violations(space.mm) == []


# K1: a multi-page access faults page by page -----------------------------------------------------

def test_k1_a_write_over_many_demand_zero_pages_succeeds():
    space = new_space()
    region = MUST(space.allocate_region(16 * PAGE, mmap=True))
    MUST(write_user_memory(space, region.vaddr() + 100, b"A" * 15 * PAGE))
    assert MUST(read_user_memory(space, region.vaddr() + 100, 15 * PAGE)) == b"A" * 15 * PAGE
    check(space)


def test_k1_a_forked_child_writes_many_cow_pages_at_once():
    space = new_space()
    region = MUST(space.allocate_region(8 * PAGE, mmap=True))
    MUST(write_user_memory(space, region.vaddr(), b"p" * 8 * PAGE))
    child = MUST(space.try_clone())
    MUST(write_user_memory(child, region.vaddr(), b"c" * 8 * PAGE))
    assert MUST(read_user_memory(space, region.vaddr(), 8 * PAGE)) == b"p" * 8 * PAGE
    assert MUST(read_user_memory(child, region.vaddr(), 8 * PAGE)) == b"c" * 8 * PAGE
    check(space), check(child)


def test_k1_a_long_write_into_unmapped_memory_is_efault_not_an_exception():
    space = new_space()
    region = MUST(space.allocate_region(5 * PAGE, mmap=True))
    result = write_user_memory(space, region.vaddr(), b"x" * 7 * PAGE)
    assert result.error().code() == EFAULT
    assert MUST(read_user_memory(space, region.vaddr() + 4 * PAGE, 1)) == b"x"  # copy_to_user
    assert read_user_memory(space, 1 << 63, 8).error().code() == EFAULT  # non-canonical


# K2, K8, K13: validate before allocating ---------------------------------------------------------

@pytest.mark.parametrize("address", [-PAGE, 2**64 - PAGE, 2**64, 2**70])
def test_k2_a_placement_outside_the_address_space_is_refused_before_allocating(address):
    space = new_space()
    before = KernelSnapshot.take(space.mm, (space,))
    result = space.allocate_region(PAGE, address=address, mmap=True)
    assert result.is_error() and result.error().code() in (EINVAL, ENOMEM)
    assert before.differences(KernelSnapshot.take(space.mm, (space,))) == []


@pytest.mark.parametrize("argument, value", [("alignment", None), ("alignment", 8192.0),
                                             ("prot", None), ("prot", 1.0), ("size", "4096"),
                                             ("address", 4096.0), ("name", 3)])
def test_k8_a_wrong_typed_argument_is_a_type_error_that_leaks_nothing(argument, value):
    space = new_space()
    before = KernelSnapshot.take(space.mm, (space,))
    arguments = {"size": PAGE, argument: value}
    with pytest.raises(TypeError, match=argument):
        space.allocate_region(**arguments)
    assert before.differences(KernelSnapshot.take(space.mm, (space,))) == []


def test_k13_a_misaligned_vmobject_offset_is_einval_not_rounded_down():
    from refimpl.kernel import AnonymousVMObject
    space = new_space()
    vmobject = MUST(AnonymousVMObject.try_create_with_size(space.mm, 4 * PAGE))
    assert space.allocate_region_with_vmobject(PAGE, vmobject, 100).error().code() == EINVAL
    vmobject.unref()


def test_k13_an_address_is_an_int():
    from refimpl.kernel import VirtualAddress
    with pytest.raises(TypeError, match="address"):
        VirtualAddress(0.5)


# K5: a CoW copy does not depend on CR3 -----------------------------------------------------------

def test_k5_a_cow_fault_copies_the_right_page_whatever_cr3_is_loaded():
    from refimpl.hw import Access, PageFault
    space = new_space()
    region = MUST(space.allocate_region(PAGE, mmap=True))
    MUST(write_user_memory(space, region.vaddr(), b"shared-data!"))
    child = MUST(space.try_clone())
    other = MUST(AddressSpace.try_create(space.mm, seed=0))  # same user range base
    other_region = MUST(other.allocate_region(PAGE, address=region.vaddr(), mmap=True))
    MUST(write_user_memory(other, other_region.vaddr(), b"PARENT-ONLY!"))
    mmu = space.mm.current_cpu().mmu
    for cr3 in (other.page_directory.cr3(), space.mm.kernel_page_directory().cr3()):
        mmu.load_cr3(cr3)
        grandchild = MUST(child.try_clone())
        fault = PageFault(region.vaddr(), 1 | Access.WRITE | Access.USER)
        MUST(grandchild.handle_page_fault(fault))
        assert MUST(read_user_memory(grandchild, region.vaddr(), 12)) == b"shared-data!"
        check(grandchild)


# K14: TRY where it cannot return -----------------------------------------------------------------

def test_k14_try_outside_any_fallible_function_is_a_clear_error():
    from refimpl.ak import TRY, Errno, Error, ErrorOr, KernelPanic
    failing = ErrorOr.from_error(Error.from_errno(Errno.ENOMEM))
    with pytest.raises(KernelPanic, match="not @fallible"):
        TRY(failing)
    namespace = {"TRY": TRY, "failing": failing}
    with pytest.raises(KernelPanic, match="notebook cell"):
        exec("TRY(failing)", namespace)


def test_k14_fallible_refuses_a_generator():
    from refimpl.ak import fallible
    with pytest.raises(TypeError, match="generator"):
        @fallible
        def pages():
            yield 1


# K6: kmalloc of any size is ENOMEM, never a host error ---------------------------------------------

@pytest.mark.parametrize("size", [2**64, 2**70, 2**100])
def test_k6_a_huge_kmalloc_or_region_is_enomem(size):
    space = new_space()
    mm = space.mm
    before = KernelSnapshot.take(mm, (space,))
    assert mm.kmalloc(size).error().code() == ENOMEM
    assert space.allocate_region(size).error().code() == ENOMEM
    assert before.differences(KernelSnapshot.take(mm, (space,))) == []


def test_k6_a_kmalloc_of_a_wrong_type_is_a_type_error_and_consumes_no_injected_failure():
    from refimpl.kernel import AllocationKind
    mm = new_space().mm
    mm.allocations.fail_nth(AllocationKind.KMALLOC, 1)
    with pytest.raises(TypeError, match="size"):
        mm.kmalloc(1.5)
    assert mm.allocations.is_armed(AllocationKind.KMALLOC)
    assert mm.kmalloc(16).error().code() == ENOMEM


# K3: identity-map only what no allocator owns ----------------------------------------------------

@pytest.mark.parametrize("where", ["free frame", "allocated frame", "negative", "last frame"])
def test_k3_an_identity_mapping_of_allocator_memory_is_refused_and_changes_nothing(where):
    from refimpl.kernel import create_identity_mapped_region
    space = new_space()
    mm = space.mm
    page = MUST(mm.allocate_physical_page())
    paddr = {"free frame": page.paddr() + 8 * PAGE, "allocated frame": page.paddr(),
             "negative": -PAGE, "last frame": mm.machine.memory.size - PAGE}[where]
    before = KernelSnapshot.take(mm, (space,))
    result = create_identity_mapped_region(mm, paddr, PAGE)
    assert result.error().code() in (EINVAL, 16)  # EBUSY
    assert before.differences(KernelSnapshot.take(mm, (space,))) == []
    assert physical_page_violations(mm) == []
    MUST(mm.allocate_physical_page())


# K9: destroy checks before it tears down -----------------------------------------------------------

def test_k9_destroying_a_space_loaded_on_another_cpu_panics_before_changing_anything():
    from refimpl.ak import KernelPanic
    space = new_space(cpus=2)
    mm = space.mm
    MUST(space.allocate_region(2 * PAGE, mmap=True))
    mm.machine.cpus[1].enable_paging(space.page_directory.cr3())
    before = KernelSnapshot.take(mm, (space,))
    with pytest.raises(KernelPanic, match="loaded on CPU"):
        space.destroy()
    assert before.differences(KernelSnapshot.take(mm, (space,))) == []
    mm.machine.cpus[1].mmu.load_cr3(mm.kernel_page_directory().cr3())
    space.destroy()
    assert physical_page_violations(mm) == []


# K12: ensure_pte never puts a user page table into the shared kernel PD --------------------------

def test_k12_ensure_pte_of_a_kernel_address_through_a_user_directory_panics():
    from refimpl.ak import KernelPanic
    space = new_space()
    mm = space.mm
    before = KernelSnapshot.take(mm, (space,))
    with pytest.raises(KernelPanic, match="kernel address"):
        mm.ensure_pte(space.page_directory, mm.layout.kernel_mapping_base + 0x1000_0000)
    assert before.differences(KernelSnapshot.take(mm, (space,))) == []


# K11: a VirtualRangeAllocator is set up once, with a page-aligned range ----------------------------

@pytest.mark.parametrize("base, size", [(1, 4095), (0x1000, 0x1800), (-PAGE, PAGE), (0, 0),
                                        (2**64 - PAGE, 2 * PAGE)])
def test_k11_initialize_with_range_refuses_a_bad_range(base, size):
    from refimpl.kernel import VirtualRangeAllocator
    mm = new_space().mm
    allocator = VirtualRangeAllocator(mm)
    before = KernelSnapshot.take(mm)
    assert allocator.initialize_with_range(base, size).error().code() == EINVAL
    assert before.differences(KernelSnapshot.take(mm)) == [] and not allocator.available_ranges()


def test_k11_initializing_twice_is_refused_and_leaks_nothing():
    from refimpl.kernel import VirtualRangeAllocator
    mm = new_space().mm
    allocator = VirtualRangeAllocator(mm)
    MUST(allocator.initialize_with_range(0x10_0000, 16 * PAGE))
    before = KernelSnapshot.take(mm)
    assert allocator.initialize_with_range(0x20_0000, 16 * PAGE).error().code() == 16
    assert allocator.initialize_from_parent(allocator).error().code() == 16
    assert before.differences(KernelSnapshot.take(mm)) == []
