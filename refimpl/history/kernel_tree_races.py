"""The programs of lesson 08: two simulated CPUs on the kernel RegionTree, for `explore()`.

Each `*_program(...)` returns a `make()` function that builds fresh state and two threads (CPU 0
and CPU 1), as `explore()` and `replay()` want; the operation under test is a parameter, so the
same program runs with the "before" functions of `refimpl.history.kernel_tree_locks` and with
the fixed ones of MemoryManager and Region. Each comes with its check.

`protected_tree_program` is the August 2022 form (dc9d2c1b109): the tree inside a
SpinlockProtected, reached only through `with_locked_steps`.
"""

from __future__ import annotations

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import (PAGE_SIZE, AllocationStrategy, MemoryManager, Program, SimThread,
                            SpinlockProtected, VirtualRange, boot_aps)
from refimpl.kernel.invariants import kernel_region_violations, region_tree_violations
from refimpl.kernel.region import Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.thread import Thread


class Observed:
    """What the threads share: the kernel, the region they care about, what a lookup found."""

    def __init__(self, mm, target) -> None:
        self.mm, self.target, self.found = mm, target, "not yet"


def two_cpu_kernel() -> MemoryManager:
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=2))
    MUST(boot_aps(mm))
    return mm


def _kernel_with_a_hole():
    """Two kernel stacks, the lower one freed: the next placement goes just below the other."""
    mm = two_cpu_kernel()
    lower, upper = MUST(Thread.try_create(mm, "lower")), MUST(Thread.try_create(mm, "upper"))
    lower.destroy()
    return mm, upper.kernel_stack_region


def lookup_program(lookup):
    """CPU 0 looks up a live kernel stack (`lookup(mm, vaddr)`, as a page fault does) while
    CPU 1 allocates a buffer that lands just below it."""
    def make():
        mm, stack = _kernel_with_a_hole()
        state = Observed(mm, stack)

        def look():
            state.found = yield from lookup(mm, stack.vaddr())

        def place():
            yield from mm.allocate_kernel_region_steps(PAGE_SIZE, "buffer")

        return Program([SimThread("lookup", look, cpu=0), SimThread("place", place, cpu=1)],
                       state, mm.machine)
    return make


def lookup_is_right(state) -> bool:
    return state.found is state.target and kernel_region_violations(state.mm) == []


def removal_program(unregister):
    """CPU 0 destroys a kernel stack (unmap, then `unregister(mm, region)`) while CPU 1
    allocates a buffer just below it."""
    def make():
        mm, stack = _kernel_with_a_hole()
        state = Observed(mm, stack)

        def destroy():
            stack.unmap()
            yield "upper unmapped"
            yield from unregister(mm, stack)
            stack._release()

        def place():
            yield from mm.allocate_kernel_region_steps(PAGE_SIZE, "buffer")

        return Program([SimThread("destroy", destroy, cpu=0), SimThread("place", place, cpu=1)],
                       state, mm.machine)
    return make


def tree_is_sound(state) -> bool:
    """Kernel image, kmalloc and the buffer, and nothing torn."""
    return kernel_region_violations(state.mm) == [] and len(state.mm.region_tree) == 3


def destroy_program(destroy):
    """CPU 0 destroys the lowest kernel stack with `destroy(mm, region)` while CPU 1 allocates
    a one-page buffer, which first fit puts where the stack was once it has left the tree."""
    def make():
        mm = two_cpu_kernel()
        stack = MUST(Thread.try_create(mm, "exiting")).kernel_stack_region
        state = Observed(mm, stack)

        def allocate():
            state.found = yield from mm.allocate_kernel_region_steps(
                PAGE_SIZE, "buffer", strategy=AllocationStrategy.ALLOCATE_NOW)

        return Program([SimThread("destroy", destroy, mm, stack, cpu=0),
                        SimThread("allocate", allocate, cpu=1)], state, mm.machine)
    return make


def every_region_mapped(state) -> bool:
    return kernel_region_violations(state.mm) == []


PROTECTED_BASE = 0x100000


def protected_tree_program():
    """The same lookup against a placement, on a tree that lives in a SpinlockProtected: both
    threads can only reach it through `with_locked_steps`."""
    def make():
        tree = RegionTree(VirtualRange(PROTECTED_BASE, 8 * PAGE_SIZE))
        lower, upper = Region.create_unbacked(None, "lower"), Region.create_unbacked(None, "upper")
        MUST(tree.place_specifically(lower, VirtualRange(PROTECTED_BASE, PAGE_SIZE)))
        MUST(tree.place_specifically(upper, VirtualRange(PROTECTED_BASE + PAGE_SIZE, PAGE_SIZE)))
        tree.remove(lower)
        protected = SpinlockProtected(tree, "kernel region tree")
        state = Observed(None, upper)
        state.protected = protected

        def look():
            state.found = yield from protected.with_locked_steps(
                lambda tree: tree.find_region_containing_steps(upper.vaddr()))

        def place():
            buffer = Region.create_unbacked(None, "buffer")
            yield from protected.with_locked_steps(
                lambda tree: tree.place_anywhere_steps(buffer, PAGE_SIZE))

        return Program([SimThread("lookup", look), SimThread("place", place)], state)
    return make


def protected_lookup_is_right(state) -> bool:
    return state.found is state.target and state.protected.with_locked(region_tree_violations) == []
