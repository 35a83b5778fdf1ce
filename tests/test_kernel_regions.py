"""The kernel's RegionTree (MemoryManager.region_tree): reservations, kernel regions placed and
mapped through it, their removal, and the races on it that the deterministic scheduler finds
(and the same lookup race on a process's tree)."""

import pytest

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB, trace_walk
from refimpl.history.kernel_tree_races import (Observed, destroy_program, every_region_mapped,
                                              lookup_is_right, lookup_program, removal_program,
                                              tree_is_sound)
from refimpl.history.kernel_tree_locks import (destroy_steps_unregistering_first,
                                               find_region_containing_steps,
                                               kernel_region_from_vaddr_steps,
                                               make_thread_specific_region_steps,
                                               unregister_kernel_region_steps)
from refimpl.kernel import (PAGE_SIZE, AddressSpace, AllocationKind, MemoryManager, Program,
                            SimThread, boot_aps, explore, replay)
from refimpl.kernel.invariants import (KernelSnapshot, address_space_violations,
                                       kernel_region_violations)
from refimpl.kernel.memory_manager import kernel_virtual_range
from refimpl.kernel.thread import Thread
from tests.kernel_helpers import sweep_allocation_failures

PAGE = PAGE_SIZE


def new_kernel(cpus=1):
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=cpus))
    MUST(boot_aps(mm))
    return mm


@pytest.fixture
def mm():
    return new_kernel()


def test_the_kernel_tree_covers_the_kernel_range_with_image_and_heap_reserved(mm):
    layout = mm.layout
    tree = mm.region_tree
    assert tree.total_range == kernel_virtual_range(layout)
    assert tree.total_range.base == layout.kernel_mapping_base + 2 * MiB
    assert tree.total_range.end == layout.kernel_pd_end
    image, heap = tree.regions()
    assert (image.name, image.range.base, image.size()) == \
        ("kernel image", layout.kernel_load_base, 2 * MiB)
    assert (heap.name, heap.range.base, heap.size()) == \
        ("kmalloc", layout.kmalloc_range_base, layout.kmalloc_range_size)
    assert image.vmobject is None and heap.vmobject is None
    assert mm.kernel_region_from_vaddr(layout.kernel_text) is image
    assert mm.kernel_region_from_vaddr(layout.kmalloc_range_base + 5 * MiB) is heap
    assert mm.kernel_region_from_vaddr(layout.user_range_base) is None
    assert kernel_region_violations(mm) == []


def test_kernel_stacks_come_from_the_tree_first_fit_and_back_to_back(mm):
    first, second = MUST(Thread.try_create(mm, "first")), MUST(Thread.try_create(mm, "second"))
    image_end = mm.region_tree.regions()[0].range.end
    assert first.kernel_stack_base() == image_end
    assert second.kernel_stack_base() == first.kernel_stack_region.range.end  # no guard page
    assert first.kernel_stack_top() == second.kernel_stack_base()
    for thread in (first, second):
        region = thread.kernel_stack_region
        assert region.is_kernel() and not region.is_user()
        assert mm.kernel_region_from_vaddr(thread.kernel_stack_top() - 8) is region
        mm.current_cpu().store(thread.kernel_stack_top() - 8, b"pushed!!")  # supervisor write
        assert mm.current_cpu().load(thread.kernel_stack_top() - 8, 8) == b"pushed!!"
    assert kernel_region_violations(mm) == []


def test_a_destroyed_kernel_region_leaves_the_tree_and_returns_its_pages(mm):
    free = mm.free_physical_pages()
    thread = MUST(Thread.try_create(mm, "short-lived"))
    stack = thread.kernel_stack_region.range
    assert mm.free_physical_pages() < free
    thread.destroy()
    assert mm.free_physical_pages() == free
    assert mm.kernel_region_from_vaddr(stack.base) is None
    assert trace_walk(mm.machine.memory, mm.kernel_page_directory().cr3(), stack.base).faulted
    assert kernel_region_violations(mm) == []
    again = MUST(mm.allocate_kernel_region(PAGE, "buffer"))
    assert again.range.base == stack.base  # the freed range is the lowest hole again


def test_bad_kernel_region_requests_are_refused_and_change_nothing(mm):
    before = KernelSnapshot.take(mm)
    for size in (0, -PAGE, PAGE + 1):
        assert mm.allocate_kernel_region(size, "bad").error().code() == 22
    assert mm.allocate_kernel_region(1 << 40, "huge").error().code() == 12
    assert before.differences(KernelSnapshot.take(mm)) == []


def test_every_failure_of_kernel_stack_allocation_leaves_no_trace():
    def setup():
        mm = new_kernel()
        MUST(Thread.try_create(mm, "existing"))
        return mm, lambda: Thread.try_create(mm, "new")

    counts = sweep_allocation_failures(setup)
    # the VMObject and the Region objects; the 16 stack pages and any page table the mapping needs
    assert counts[AllocationKind.KMALLOC] == 2
    assert counts[AllocationKind.PHYSICAL_PAGE] >= 16


def test_a_failed_mapping_takes_the_region_out_of_the_tree_again(mm):
    """Destroying it unregisters it, as ~Region did for kernel regions (user regions were left in
    their tree until 4edae21bd13: refimpl.history.atomic_place)."""
    before = KernelSnapshot.take(mm)
    mm.allocations.fail_nth(AllocationKind.PHYSICAL_PAGE, 1)  # the page table map() needs
    result = mm.allocate_kernel_region(PAGE, "unlucky")
    assert result.error().code() == 12
    assert before.differences(KernelSnapshot.take(mm)) == []


# Races on the kernel tree, found by exploring every interleaving of two CPUs ------------------

def test_a_lookup_without_the_tree_lock_sees_a_placement_half_done():
    """f0f97e1db02^: kernel_region_from_vaddr under s_mm_lock only, the insert under the tree's
    lock. The lookup's index goes stale under it: it reports no region at a live stack."""
    make = lookup_program(kernel_region_from_vaddr_steps)
    result = explore(make, check=lookup_is_right)
    assert result.failure is not None
    run = replay(make, result.failing_schedule)
    assert run.state.found is not run.state.target
    assert "lookup: found the candidate's index" in [step.label for step in run.trace]


def test_with_the_tree_lock_every_lookup_finds_the_region():
    result = explore(lookup_program(
        lambda mm, vaddr: mm.kernel_region_from_vaddr_steps(vaddr)), check=lookup_is_right)
    assert result.failure is None and result.runs > 1


def test_a_removal_without_the_tree_lock_corrupts_a_placement():
    """f0f97e1db02^: unregister_kernel_region under s_mm_lock only."""
    result = explore(removal_program(unregister_kernel_region_steps),
                     check=tree_is_sound)
    assert result.failure is not None
    assert result.reason.startswith("panic") or result.reason == "check failed"


def test_with_the_tree_lock_no_removal_disturbs_a_placement():
    result = explore(removal_program(
        lambda mm, region: mm.unregister_kernel_region_steps(region)), check=tree_is_sound)
    assert result.failure is None and result.runs > 1


def test_unregistering_before_unmapping_clears_the_next_regions_ptes():
    """0a83c035469^: the new region is placed where the old one was and mapped; the old unmap
    then clears its PTE. Its VMObject holds the page, its PTE is not present: the "BUG!
    Unexpected NP fault" of SerenityOS."""
    make = destroy_program(destroy_steps_unregistering_first)
    result = explore(make, check=every_region_mapped)
    assert result.failure is not None and result.reason == "check failed"
    run = replay(make, result.failing_schedule)
    mm, buffer = run.state.mm, run.state.found
    assert buffer.range.base == run.state.target.range.base  # the old stack's address
    assert buffer.physical_page(0) is not None
    walk = trace_walk(mm.machine.memory, mm.kernel_page_directory().cr3(), buffer.vaddr())
    assert walk.faulted and not walk.fault_error_code & 1  # not present
    assert mm.kernel_region_from_vaddr(buffer.vaddr()) is buffer


def test_unmapping_before_unregistering_leaves_every_region_mapped():
    make = destroy_program(lambda mm, region: region.destroy_steps())
    result = explore(make, check=every_region_mapped)
    assert result.failure is None and result.runs > 1


# The same race on a process's tree (07f3d09c552 to f0f97e1db02) -----------------------------

def _user_lookup_against_thread_creation(allocate, lookup):
    """A two-page region freed below a live one: the new thread's region goes under it."""
    def make():
        mm = new_kernel(cpus=2)
        space = MUST(AddressSpace.try_create(mm))
        lower = MUST(space.allocate_region(2 * PAGE))
        upper = MUST(space.allocate_region(PAGE))
        MUST(space.deallocate_region(lower))
        state = Observed(mm, upper)
        state.space = space

        def check_syscall():  # validate_syscall_preconditions -> find_region_containing
            state.found = yield from lookup(space, upper.vaddr())

        def create_thread():  # sys$create_thread -> make_thread_specific_region
            yield from allocate(space, PAGE, "thread-specific")

        return Program([SimThread("syscall", check_syscall, cpu=0),
                        SimThread("create_thread", create_thread, cpu=1)], state, mm.machine)
    return make


def _user_lookup_is_right(state):
    return state.found is state.target and address_space_violations(state.space) == []


def test_a_syscall_check_under_m_lock_only_misses_its_region_while_a_thread_is_created():
    make = _user_lookup_against_thread_creation(make_thread_specific_region_steps,
                                                find_region_containing_steps)
    result = explore(make, check=_user_lookup_is_right)
    assert result.failure is not None and result.reason == "check failed"
    assert replay(make, result.failing_schedule).state.found is None


def test_with_m_lock_and_the_tree_lock_every_syscall_check_finds_its_region():
    make = _user_lookup_against_thread_creation(
        lambda space, size, name: space.allocate_region_steps(size, name),
        lambda space, address: space.find_region_containing_steps(address))
    result = explore(make, check=_user_lookup_is_right)
    assert result.failure is None and result.runs > 1
