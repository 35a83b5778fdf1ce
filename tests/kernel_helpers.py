"""Small helpers the kernel tests share."""

from refimpl.ak import MUST
from refimpl.kernel import MemoryManager, PageDirectory, PagePurpose, PhysicalPage
from refimpl.kernel.allocation import AllocationKind
from refimpl.kernel.invariants import KernelSnapshot, kernel_region_violations


def map_user_page(mm: MemoryManager, directory: PageDirectory, vaddr: int,
                  writable: bool = True) -> PhysicalPage:
    """Map a fresh page at `vaddr`, as Region::map would (the caller keeps the reference)."""
    page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
    pte = MUST(mm.ensure_pte(directory, vaddr))
    pte.set_physical_page_base(page.paddr())
    pte.set_user_allowed(True)
    pte.set_writable(writable)
    pte.set_present(True)
    return page


def unmap_user_page(mm: MemoryManager, directory: PageDirectory, vaddr: int,
                    page: PhysicalPage) -> None:
    mm.release_pte(directory, vaddr, is_last_pte=True)
    mm.flush_tlb(directory, vaddr)
    page.unref()


def sweep_allocation_failures(setup, kinds=tuple(AllocationKind)):
    """Fail each allocation an operation makes, one at a time, and check after each failure that
    the operation reported ENOMEM and left the kernel exactly as it was (the kernel's RegionTree
    included, and still sound).

    `setup()` builds a fresh kernel and returns `(mm, operation)` or `(mm, operation, spaces)`,
    spaces being address spaces whose regions must not change either; every attempt starts from
    a new setup, so attempts cannot influence each other. Returns, per kind, how many allocation
    points were exercised.
    """
    exercised = {}
    for kind in kinds:
        n = 1
        while True:
            mm, operation, *spaces = setup()
            spaces = tuple(spaces[0]) if spaces else ()
            before = KernelSnapshot.take(mm, spaces)
            mm.allocations.fail_nth(kind, n)
            result = operation()
            if mm.allocations.is_armed(kind):  # the operation made fewer than n allocations
                break
            assert result.is_error(), f"{kind.value} #{n} failed but the operation succeeded"
            assert result.error().code() == 12, f"{kind.value} #{n}: {result.error()!r}"
            differences = before.differences(KernelSnapshot.take(mm, spaces))
            assert not differences, f"{kind.value} #{n} failure changed state: {differences}"
            assert kernel_region_violations(mm) == [], f"{kind.value} #{n}: kernel tree"
            n += 1
        exercised[kind] = n - 1
    return exercised
