"""Readers of a process's regions at f0f97e1db02, with the locks each one took, for lesson 08's
"find a site the stopgap missed" exercise.

f0f97e1db02 added the tree's lock to thirteen AddressSpace functions, but the tree stayed
reachable through the public `AddressSpace::regions()`, and some walkers kept only `m_lock` or
no lock at all. Meanwhile `Thread::make_thread_specific_region` (sys$create_thread) placed a
region under the tree's lock only (`kernel_tree_locks.make_thread_specific_region_steps`), so a
walker without the tree's lock can run in the middle of that insert. Each reader below walks the
regions as the function of the same name did (`RegionTree.regions_steps`) and returns the names
it saw.
"""

from __future__ import annotations

from contextlib import ExitStack

from refimpl.ak import MUST
from refimpl.history.kernel_tree_locks import make_thread_specific_region_steps
from refimpl.history.kernel_tree_races import Observed, two_cpu_kernel
from refimpl.kernel import PAGE_SIZE, AddressSpace, Program, SimThread


def _walk_steps(space: AddressSpace, take_m_lock: bool, take_tree_lock: bool):
    locks = ([space.get_lock()] if take_m_lock else []) + \
        ([space.region_tree.get_lock()] if take_tree_lock else [])
    with ExitStack() as held:
        for lock in locks:
            yield from lock.acquire()
            held.callback(lock.unlock)
        regions = yield from space.region_tree.regions_steps()
    return [region.name for region in regions]


READERS = {
    # name: (m_lock, tree lock), as at f0f97e1db02
    "procfs_get_virtual_memory_stats": (True, False),  # ProcessSpecificExposed.cpp:235
    "sys$fork": (True, False),  # fork.cpp:110
    "PerformanceEventBuffer": (False, False),  # PerformanceEventBuffer.cpp:363
    "Coredump": (False, False),  # Coredump.cpp:49
    "amount_virtual": (True, True),  # AddressSpace.cpp, lock added by f0f97e1db02
    "dump_regions": (True, True),  # AddressSpace.cpp, lock added by f0f97e1db02
}


def reader_program(name: str):
    """CPU 0 runs the reader `name` over a process's regions while CPU 1 creates a thread,
    whose thread-specific region is placed below the last region."""
    if name not in READERS:
        raise ValueError(f"no reader named {name!r}: choose one of {', '.join(READERS)}")
    take_m_lock, take_tree_lock = READERS[name]

    def make():
        mm = two_cpu_kernel()
        space = MUST(AddressSpace.try_create(mm))
        lower = MUST(space.allocate_region(2 * PAGE_SIZE, name="lower"))
        MUST(space.allocate_region(PAGE_SIZE, name="upper"))
        MUST(space.deallocate_region(lower))
        state = Observed(mm, None)
        state.space = space

        def read():
            state.found = yield from _walk_steps(space, take_m_lock, take_tree_lock)

        def create_thread():
            yield from make_thread_specific_region_steps(space, PAGE_SIZE, "thread-specific")

        return Program([SimThread(name, read, cpu=0),
                        SimThread("create_thread", create_thread, cpu=1)], state, mm.machine)
    return make


def saw_a_consistent_tree(state) -> bool:
    """The reader saw the regions as they were before the insert, or as they were after it."""
    return state.found in (["upper"], ["thread-specific", "upper"])
