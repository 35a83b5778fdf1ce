"""The checks of lesson 03: page tables and ref-counting."""

from __future__ import annotations

import random

from refimpl.ak import MUST, Errno
from refimpl.grading.checks.common import (call, expect_error, expect_value, fresh_kernel,
                                           passed, seeds, snapshot_values)
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.history.page_table_map import MemoryManagerWithPageTableMap, prepare_reentrancy
from refimpl.hw import PTEFlags
from refimpl.kernel import AllocationKind, MemoryManager, PageDirectory, PagePurpose
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.invariants import KernelSnapshot, page_table_refcount_violations

def _addresses(rng: random.Random, count: int) -> list[int]:
    """User addresses spread over a few page tables, some sharing one."""
    tables = [0x40_0000 + rng.randrange(64) * 0x20_0000 for _ in range(3)]
    return [rng.choice(tables) + rng.randrange(512) * PAGE_SIZE for _ in range(count)]


@exercise("03-ensure-pte", "Write ensure_pte: the PDE owns the page table", 4, "ensure_pte",
          forbids=("refimpl.kernel.memory_manager.MemoryManager.ensure_pte",))
def check_ensure_pte(ensure_pte, hidden=False):
    for seed in seeds(hidden, visible=3, hidden_count=8):
        rng = random.Random(seed)
        mm = fresh_kernel()
        directory = MUST(PageDirectory.try_create_for_userspace(mm))
        for address in _addresses(rng, 6):
            case = f"ensure_pte(directory, {address:#x}) (seed {seed})"
            with mm.allocations.record() as log:
                result = call(ensure_pte, mm, directory, address, case=case)
            pte = expect_value(result, case)
            wanted = mm.pte(directory, address)
            if wanted is None or pte.address != wanted.address:
                raise CheckFailed(f"{case}: the PTE pointer should be {wanted.address!r} (entry "
                                  f"{mm.layout.pt_index(address)} of the PT window), got "
                                  f"{getattr(pte, 'address', pte)!r}")
            heap = [r for r in log if r.kind is AllocationKind.KMALLOC]
            if heap:
                raise CheckFailed(f"{case}: ensure_pte must not kmalloc; it did from "
                                  f"{' > '.join(heap[0].call_chain[-3:])}")
            _check_refcounts(mm, case)
            # the page tables' physical pages and the heap's state, not "no kmalloc" (a 0
            # anyone could write): only an ensure_pte that allocates as the kernel does
            # leaves these
            record(case, pte.address, mm.free_physical_pages(),
                   mm.kmalloc_heap.allocated_bytes(),
                   sorted(directory.page_table_addresses().items()))
        record(f"seed {seed}: the kernel after", snapshot_values(KernelSnapshot.take(mm)))
        _check_ensure_pte_failure(ensure_pte, seed)
    return passed(len(seeds(hidden, 3, 8)) * 6, "calls on fresh kernels, and out of memory")


def _check_refcounts(mm: MemoryManager, case: str) -> None:
    problems = page_table_refcount_violations(mm)
    if problems:
        raise CheckFailed(f"{case}: {problems[0]}")


def _check_ensure_pte_failure(ensure_pte, seed: int) -> None:
    mm = fresh_kernel()
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    before = KernelSnapshot.take(mm)
    mm.allocations.fail_nth(AllocationKind.PHYSICAL_PAGE, 1)
    case = "ensure_pte with no free physical page"
    result = call(ensure_pte, mm, directory, 0x80_0000 + seed * PAGE_SIZE, case=case)
    expect_error(result, Errno.ENOMEM, case)
    differences = KernelSnapshot.take(mm).differences(before)
    if differences:
        raise CheckFailed(f"{case}: the call failed but changed {', '.join(differences)}")
    record(case, result.error().code(), snapshot_values(KernelSnapshot.take(mm)))


@exercise("03-release-pte", "Write release_pte: unref, then clear the PDE", 3, "release_pte",
          forbids=("refimpl.kernel.memory_manager.MemoryManager.release_pte",))
def check_release_pte(release_pte, hidden=False):
    for seed in seeds(hidden, visible=3, hidden_count=8):
        rng = random.Random(seed)
        mm = fresh_kernel()
        directory = MUST(PageDirectory.try_create_for_userspace(mm))
        free = mm.free_physical_pages()
        addresses = sorted(set(_addresses(rng, 8)))
        pages = {}
        for address in addresses:
            page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
            pte = MUST(mm.ensure_pte(directory, address))
            pte.set_raw(mm.format.encode(page.paddr() // PAGE_SIZE,
                                         PTEFlags.PRESENT | PTEFlags.USER_SUPERVISOR))
            pages[address] = page
        rng.shuffle(addresses)
        for address in addresses:
            case = f"release_pte(directory, {address:#x}, is_last_pte=True) (seed {seed})"
            call(release_pte, mm, directory, address, True, case=case)
            pte = mm.pte(directory, address)
            if pte is not None and pte.raw():
                raise CheckFailed(f"{case}: the PTE is still {pte.describe()}")
            _check_refcounts(mm, case)
            record(case, None if pte is None else pte.raw(), mm.free_physical_pages(),
                   len(directory.page_table_addresses()))
            pages.pop(address).unref()
        left = directory.page_table_addresses()
        if left:
            raise CheckFailed(f"seed {seed}: every PTE was released with is_last_pte=True, but "
                              f"{len(left)} page table(s) are still mapped")
        if mm.free_physical_pages() != free:
            raise CheckFailed(f"seed {seed}: {free - mm.free_physical_pages()} page(s) were not "
                              f"given back")
    return passed(len(seeds(hidden, 3, 8)) * 8, "releases, every page table given back")


FIND_WATCH = ["Region.map", "MemoryManagerWithPageTableMap.ensure_pte",
              "MemoryManager.quickmap_pd", "MemoryManager.quickmap_pt",
              "MemoryManager.allocate_physical_page", "HashMap.set", "HashMap.try_rehash",
              "KmallocHeap.kmalloc", "KmallocHeap.try_expand"]


def reentrancy_events(seed: int):
    """A recorded call chain of the lesson 03 bug; the seed picks which functions are shown."""
    from refimpl.viz.call_chain import quickmap_pd_probe, record_call_chain
    rng = random.Random(seed)
    watched = FIND_WATCH[:2] + rng.sample(FIND_WATCH[2:], rng.randrange(2, len(FIND_WATCH) - 1))
    if "MemoryManager.quickmap_pd" not in watched:
        watched.append("MemoryManager.quickmap_pd")
    mm, space, region = prepare_reentrancy(MemoryManagerWithPageTableMap)
    _, events = record_call_chain(lambda: region.map(space.page_directory), watched,
                                  quickmap_pd_probe(mm))
    return events


def window_moves_at(events) -> int:
    """The reference: the first event, after the outermost ensure_pte's own quickmap_pd has
    returned, at which the PD window shows something else."""
    outer = next(i for i, e in enumerate(events) if e.function.endswith("ensure_pte"))
    pointed = next(i for i in range(outer + 1, len(events))
                   if events[i].kind == "return" and events[i].function.endswith("quickmap_pd"))
    return next(i for i in range(pointed + 1, len(events))
                if events[i].probe != events[pointed].probe)


@exercise("03-find-reentrancy", "Find where the quickmap window moved", 2, "find_reentrancy")
def check_find_reentrancy(find_reentrancy, hidden=False):
    for seed in seeds(hidden, visible=2, hidden_count=4):
        events = reentrancy_events(seed)
        wanted = window_moves_at(events)
        got = call(find_reentrancy, events, case=f"reentrancy_events({seed})")
        if got != wanted:
            event = events[wanted]
            raise CheckFailed(f"reentrancy_events({seed}): the window moves at step {wanted} "
                              f"({event.kind} {event.function}: {event.probe}), you said {got}")
        record(f"reentrancy_events({seed})", got)
    return passed(len(seeds(hidden, 2, 4)), "recorded chains")
